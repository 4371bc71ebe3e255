"""The built-in loaders: skops, ONNX Runtime, safetensors and (when allowed) joblib."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._card import ModelVersion
from .._errors import SourceError, UntrustedTypesError
from ._registry import LoaderSpec, LoadOptions, missing_library, register_loader

__all__ = ["OnnxModel"]


def _only(spec: LoaderSpec, manifest: ModelVersion, files: Mapping[str, Path]) -> Path:
    return files[spec.files(manifest)[0]]


def _skops(manifest: ModelVersion, files: Mapping[str, Path], options: LoadOptions) -> Any:
    try:
        import skops.io as sio
    except ImportError as exc:
        raise missing_library("skops", "skops", exc) from exc
    path = _only(SKOPS, manifest, files)
    trusted = list(options.trusted_types)
    # Checked first so the error lists every type; skops would stop at the first.
    untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in trusted]
    if untrusted:
        raise UntrustedTypesError(
            f"{manifest.ref}: the skops file holds types the caller did not trust: "
            f"{', '.join(untrusted)}. Review them, then pass trusted_types=[...] (or "
            "--trust-type); types are never taken from the model itself (nothing was loaded)"
        )
    return sio.load(path, trusted=trusted)


class OnnxModel:
    """An ONNX Runtime session with a ``predict`` for servers that call one.

    Attributes:
        session: The ``onnxruntime.InferenceSession`` (use ``session.run`` for full control).
    """

    _DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64"}

    def __init__(self, session: Any) -> None:
        self.session = session

    def predict(self, inputs: Any) -> Any:
        """Run the model on its single input; return its first output."""
        import numpy as np

        first = self.session.get_inputs()[0]
        array = np.asarray(inputs, dtype=self._DTYPES.get(first.type, None))
        return self.session.run(None, {first.name: array})[0]

    def run(self, output_names: list[str] | None, feeds: dict[str, Any]) -> Any:
        """``session.run`` passed through."""
        return self.session.run(output_names, feeds)


def _onnx(manifest: ModelVersion, files: Mapping[str, Path], options: LoadOptions) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise missing_library("onnx", "onnx", exc) from exc
    path = _only(ONNX, manifest, files)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return OnnxModel(session)


def _safetensors(manifest: ModelVersion, files: Mapping[str, Path], options: LoadOptions) -> Any:
    try:
        from safetensors.numpy import load_file
    except ImportError as exc:
        raise missing_library("safetensors", "safetensors", exc) from exc
    tensors: dict[str, Any] = {}
    for name in sorted(SAFETENSORS.files(manifest)):
        for key, value in load_file(str(files[name])).items():
            if key in tensors:
                raise SourceError(f"{manifest.ref}: tensor {key!r} appears in two shards")
            tensors[key] = value
    return tensors


def _joblib(manifest: ModelVersion, files: Mapping[str, Path], options: LoadOptions) -> Any:
    import joblib

    return joblib.load(_only(JOBLIB, manifest, files))


SKOPS = register_loader(LoaderSpec("skops", (".skops",), False, "skops", _skops, order=1))
ONNX = register_loader(LoaderSpec("onnx", (".onnx",), False, "onnx", _onnx, order=2))
SAFETENSORS = register_loader(
    LoaderSpec("safetensors", (".safetensors",), False, "safetensors", _safetensors, True, order=3)
)
JOBLIB = register_loader(
    LoaderSpec("joblib", (".joblib", ".pkl", ".pickle"), True, None, _joblib, order=4)
)
