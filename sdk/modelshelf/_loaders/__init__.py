"""Loaders: turn a verified version's files into a model, pickle only when allowed.

Used by :meth:`~modelshelf.Registry.load` and :class:`~modelshelf.serving.ModelServer`
alike. Importing this package registers the built-in loaders (skops, onnx, safetensors,
joblib); their libraries are imported only when a version needs them
(``pip install 'modelshelf[skops]'``, ``[onnx]``, ``[safetensors]``).
"""

from __future__ import annotations

from ._builtin import OnnxModel
from ._registry import LoaderSpec, LoadOptions, choose_loader, loader_names, register_loader

__all__ = [
    "LoadOptions",
    "LoaderSpec",
    "OnnxModel",
    "choose_loader",
    "loader_names",
    "register_loader",
]
