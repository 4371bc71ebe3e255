"""The public surface, pinned: adding or removing a name is a deliberate change here.

As httpx's ``tests/test_exported_members.py``: every name in ``__all__`` exists, and the
lists are exactly what the README and docs/design.md document.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

EXPORTED = {
    "modelshelf": [
        "AccessDeniedError", "AliasNotSetError", "Aliases", "ApprovalGate", "BlobsMissingError",
        "ApprovalInfo",
        "ApprovalRequiredError", "CREATE", "CommitStateUnknownError",
        "Comparison", "DestinationExistsError", "VersionDiff",
        "ConfigurationError", "ConflictError", "CorruptObjectError", "FileEntry", "GcPlan",
        "HistoryRecord", "IfMatch",
        "IntegrityError", "InvalidAliasesError", "InvalidBundleError", "InvalidCardError",
        "InvalidEventError", "InvalidSigningKeyError", "InvalidTrustPolicyError", "KeyPair",
        "InvalidInputError", "InvalidKeyError", "InvalidNameError", "InvalidPolicyError",
        "InvalidReferenceError", "InvalidVersionError", "KeyNotFoundError", "LocalStore",
        "ModelCard", "ModelNotFoundError", "ModelRef", "ModelVersion", "ModelshelfError",
        "NotFoundError", "OVERWRITE", "ObjectInfo", "Performance", "PickleNotAllowedError",
        "PreconditionFailedError", "SignatureInfo", "SignatureRequirements",
        "PromotionConflictError", "Registry", "S3Store", "SchemaChangeError", "ServedVersion",
        "SourceError", "Store", "StoreError", "StoreUnavailableError", "StoredObject",
        "SupportsContentAddressedPut", "SupportsHashedGet", "SupportsListFolders",
        "SupportsStaleUploads", "TrainingData", "TrustError", "TrustPolicy", "TrustedKey",
        "UntrustedTypesError", "UntrustedVersionError", "VersionExistsError",
        "VersionNotFoundError", "__version__", "canonical_json", "check_name", "new_key_pair",
        "open_store", "parse_ref", "parse_version", "verify_folder",
    ],
    "modelshelf.layout": [
        "DOCTOR_PREFIX", "TRUST_HISTORY_PREFIX", "TRUST_POLICY_KEY", "WINDOW_FORMAT",
        "aliases_key", "approval_key", "approvals_prefix", "blob_key", "blob_prefix",
        "blobs_root", "condemnation_key", "decision_prefix", "gc_prefix", "ever_aliased_key",
        "history_key", "history_prefix",
        "manifest_key", "metrics_key", "metrics_prefix", "policy_key", "promoter_state_key",
        "report_key", "signature_key", "signatures_prefix", "times_chapter_key",
        "trust_history_key",
        "version_head_key", "version_of_manifest_key", "versions_prefix",
    ],
    "modelshelf.views": ["build_report", "create_app"],
    "modelshelf.serving": [
        "Loader", "ModelServer", "Prediction", "ServerStatus", "Snapshot", "joblib_loader",
        "route_point",
    ],
    "modelshelf.metrics": [
        "ArmStats", "LatencySketch", "MetricsKey", "MetricsSummary", "ROUTE_BUCKETS",
        "SKETCH_RELATIVE_ACCURACY", "WINDOW_FORMAT", "arm_stats_from_json", "arm_stats_to_json",
        "check_server_id", "latency_mismatch", "metrics_key", "metrics_prefix", "new_sketch",
        "parse_metrics_key", "parse_window_key", "route_bucket", "sketch_bins",
        "sketch_from_bins", "sketch_from_dict", "sketch_gamma", "sketch_to_dict",
        "summary_from_json", "summary_key", "summary_to_json", "window_key", "window_start",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module_name", sorted(EXPORTED))
def test_all_is_exactly_the_documented_surface(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = sorted(module.__all__)
    expected = sorted(EXPORTED[module_name])
    assert exported == expected, (
        f"{module_name}.__all__ changed: added {sorted(set(exported) - set(expected))}, "
        f"removed {sorted(set(expected) - set(exported))}; update the README and this test"
    )


@pytest.mark.parametrize("module_name", sorted(EXPORTED))
def test_every_exported_name_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{module_name} lists names it does not have: {missing}"


def test_the_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    import modelshelf

    assert modelshelf.__version__ == version("modelshelf"), "one version source: pyproject.toml"


def test_return_types_of_the_public_api_are_exported() -> None:
    import modelshelf

    registry_types = {
        "Aliases",
        "HistoryRecord",
        "ServedVersion",
        "GcPlan",
        "ModelVersion",
        "Comparison",
        "VersionDiff",
    }
    assert registry_types <= set(modelshelf.__all__), "users must be able to name what they get"


def test_a_type_checker_sees_every_exported_class_as_the_class(tmp_path: Path) -> None:
    """The package ships ``py.typed``: a user's mypy must see ``S3Store`` (exported lazily so
    that local-folder users do not import boto3) as the class, not as ``__getattr__``'s
    ``object``, or ``store: S3Store = S3Store(...)`` fails to type-check. Each class is used
    as an annotation, which a name typed as ``object`` cannot be."""
    from mypy import api

    lines: list[str] = []
    for module_name in sorted(EXPORTED):
        module = importlib.import_module(module_name)
        for name in sorted(module.__all__):
            if isinstance(getattr(module, name), type):
                alias = f"{module_name.replace('.', '_')}_{name}"
                lines.append(f"from {module_name} import {name} as {alias}")
                lines.append(f"def _{alias}(value: {alias}) -> {alias}:\n    return value")
    snippet = tmp_path / "uses_the_api.py"
    snippet.write_text("\n".join(lines) + "\n")
    root = Path(__file__).resolve().parent.parent
    stdout, stderr, status = api.run(
        [
            str(snippet),
            "--config-file", str(root / "pyproject.toml"),
            "--cache-dir", str(tmp_path / "mypy-cache"),
            "--python-executable", sys.executable,
        ]
    )  # fmt: skip
    assert status == 0, (
        f"exported classes a type checker does not see as classes:\n{stdout}{stderr}"
    )
