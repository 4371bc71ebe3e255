"""Every key of the bucket, in one place (docs/design.md, "Keys under the registry root").

Public because the layout is a contract: other tools (the promoter, a bucket policy, a
lifecycle rule) address the same objects.

Keys are relative to the registry root (``s3://bucket/prefix`` or a folder)::

    {model}/blobs/sha256/{hex}                        file contents, content-addressed
    {model}/versions/{MAJOR.MINOR.PATCH}.json         a version's manifest: the commit point
    {model}/aliases.json                              active, canary, ratio, generation
    {model}/history/{generation:012d}.json            one record per alias change
    {model}/metrics/{version}/{window}/{server}-{seq:08d}.json   serving summaries
    {model}/promoter/policy.json                      the promotion policy
    {model}/promoter/state.json                       the promoter's cursor and statistics
    {model}/promoter/decisions/{time}-{generation}.json   one record per promoter decision
    {model}/index/latest.json                         hint: the highest version claimed
    {model}/index/ever-aliased.json                   hint: versions ever live, record times
    {model}/index/times/{chapter:08d}.json            hint: times of 64 history records
    {model}/signatures/{version}/{key-id}.sig         OMS signature bundles, one per key
    {model}/approvals/{version}/{gate}/{key-id}.sig   signed approvals, one per key and gate
    trust.json                                        the trust policy
    _trust/history/{generation:012d}.json             every trust policy ever stored
    {model}/report.html                               the model's report, when the promoter
                                                      writes it (policy ``write_report``)
    {model}/gc/{time}-{random}.json                   blobs a gc run in progress will delete
    _doctor/{random}/...                              scratch objects of ``modelshelf doctor``

The functions here only build strings; the callers validate names and versions first
(``_refs.check_name`` / ``parse_version``), so a key can never climb out of its model.
"""

from __future__ import annotations

__all__ = [
    "DOCTOR_PREFIX",
    "TRUST_HISTORY_PREFIX",
    "TRUST_POLICY_KEY",
    "WINDOW_FORMAT",
    "aliases_key",
    "approval_key",
    "approvals_prefix",
    "blob_key",
    "blob_prefix",
    "blobs_root",
    "condemnation_key",
    "decision_prefix",
    "ever_aliased_key",
    "gc_prefix",
    "history_key",
    "history_prefix",
    "manifest_key",
    "metrics_key",
    "metrics_prefix",
    "policy_key",
    "promoter_state_key",
    "report_key",
    "signature_key",
    "signatures_prefix",
    "times_chapter_key",
    "trust_history_key",
    "version_head_key",
    "version_of_manifest_key",
    "versions_prefix",
]

DOCTOR_PREFIX = "_doctor/"
"""Scratch space of ``modelshelf doctor``; never a model (names cannot start with ``_``)."""

WINDOW_FORMAT = "%Y%m%dT%H%M%SZ"
"""How a metrics window's start appears in its keys (UTC, to the second)."""

_MANIFEST_SUFFIX = ".json"


def blobs_root(model: str) -> str:
    """Everything a model's blob uploads write under (multipart uploads included)."""
    return f"{model}/blobs/"


def blob_prefix(model: str) -> str:
    """The prefix under which a model's content-addressed blobs live."""
    return f"{model}/blobs/sha256/"


def blob_key(model: str, sha256: str) -> str:
    """Key of the blob whose bytes hash to ``sha256``."""
    return f"{blob_prefix(model)}{sha256}"


def versions_prefix(model: str) -> str:
    """The prefix under which a model's manifests live."""
    return f"{model}/versions/"


def manifest_key(model: str, version: str) -> str:
    """Key of a version's manifest."""
    return f"{versions_prefix(model)}{version}{_MANIFEST_SUFFIX}"


def version_of_manifest_key(model: str, key: str) -> str | None:
    """The version text a manifest key names, or ``None`` for any other key."""
    prefix = versions_prefix(model)
    if not key.startswith(prefix) or not key.endswith(_MANIFEST_SUFFIX):
        return None
    stem = key[len(prefix) : -len(_MANIFEST_SUFFIX)]
    return stem if stem and "/" not in stem else None


def aliases_key(model: str) -> str:
    """Key of a model's aliases object."""
    return f"{model}/aliases.json"


def history_prefix(model: str) -> str:
    """The prefix under which a model's alias history records live."""
    return f"{model}/history/"


def history_key(model: str, generation: int) -> str:
    """Key of the history record for one generation."""
    return f"{history_prefix(model)}{generation:012d}.json"


def metrics_prefix(model: str, version: str | None = None) -> str:
    """The prefix of a model's (or one version's) metrics objects."""
    return f"{model}/metrics/" if version is None else f"{model}/metrics/{version}/"


def metrics_key(model: str, version: str, window: str, server_id: str, seq: int) -> str:
    """Key of one flushed metrics object; ``window`` is formatted with WINDOW_FORMAT."""
    return f"{metrics_prefix(model, version)}{window}/{server_id}-{seq:08d}.json"


def policy_key(model: str) -> str:
    """Key of a model's promotion policy."""
    return f"{model}/promoter/policy.json"


def promoter_state_key(model: str) -> str:
    """Key of the promoter's state for a model."""
    return f"{model}/promoter/state.json"


def decision_prefix(model: str) -> str:
    """The prefix of a model's promoter decision records."""
    return f"{model}/promoter/decisions/"


_BUNDLE_SUFFIX = ".sig"

TRUST_POLICY_KEY = "trust.json"
"""The registry's trust policy (replaced only with If-Match)."""
TRUST_HISTORY_PREFIX = "_trust/history/"
"""Every stored trust policy; never a model (names cannot start with ``_``)."""


def signatures_prefix(model: str, version: str) -> str:
    """Where a version's OMS signature bundles live."""
    return f"{model}/signatures/{version}/"


def signature_key(model: str, version: str, key_id: str) -> str:
    """Key of the bundle signed by the key whose id is ``key_id``."""
    return f"{signatures_prefix(model, version)}{key_id}{_BUNDLE_SUFFIX}"


def approvals_prefix(model: str, version: str, gate: str | None = None) -> str:
    """Where a version's approvals (for one gate) live."""
    base = f"{model}/approvals/{version}/"
    return f"{base}{gate}/" if gate else base


def approval_key(model: str, version: str, gate: str, key_id: str) -> str:
    """Key of one approval of a version for ``gate`` by ``key_id``."""
    return f"{approvals_prefix(model, version, gate)}{key_id}{_BUNDLE_SUFFIX}"


def trust_history_key(generation: int) -> str:
    """Key of the stored trust policy of one generation."""
    return f"{TRUST_HISTORY_PREFIX}{generation:012d}.json"


def report_key(model: str) -> str:
    """Key of the HTML report the promoter can write after each run (``modelshelf report``)."""
    return f"{model}/report.html"


def version_head_key(model: str) -> str:
    """Key of the version head: a hint naming the highest version a push has claimed."""
    return f"{model}/index/latest.json"


def ever_aliased_key(model: str) -> str:
    """Key of gc's hint: every version ever active or canary, and its history cursor."""
    return f"{model}/index/ever-aliased.json"


def times_chapter_key(model: str, chapter: int) -> str:
    """Key of gc's hint of the times of history records 64 * chapter + 1 .. + 64."""
    return f"{model}/index/times/{chapter:08d}.json"


def gc_prefix(model: str) -> str:
    """The prefix of a model's condemnations (gc runs in progress; docs/design.md, "Retention")."""
    return f"{model}/gc/"


def condemnation_key(model: str, time: str, token: str) -> str:
    """Key of one gc run's condemnation; ``time`` is ``%Y%m%dT%H%M%S%fZ`` (UTC)."""
    return f"{gc_prefix(model)}{time}-{token}.json"
