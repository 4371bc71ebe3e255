"""Turn a registry URI into a store; settings resolved at call time, never at import."""

from __future__ import annotations

import os
from typing import Any

from ._errors import ConfigurationError
from ._local import LocalStore
from ._store import Store

__all__ = ["DEFAULT_REGISTRY", "open_store", "resolve_registry_uri"]

DEFAULT_REGISTRY = "./.modelshelf"
"""The embedded default: a local folder registry in the working directory."""


def resolve_registry_uri(uri: str | None = None) -> str:
    """The registry URI from the argument, else ``MODELSHELF_REGISTRY``, else the default."""
    if uri:
        return uri
    return os.environ.get("MODELSHELF_REGISTRY") or DEFAULT_REGISTRY


def open_store(uri: str | os.PathLike[str] | Store | None = None, **s3_options: Any) -> Store:
    """Open the store for a registry URI.

    Args:
        uri: ``s3://bucket/prefix``, ``file:///path``, a plain path, or a ready store.
            ``None`` resolves through ``MODELSHELF_REGISTRY`` then ``./.modelshelf``.
        **s3_options: Passed to :class:`~modelshelf.S3Store` (``client``, ``endpoint_url``,
            ``profile``, ``region``...) for ``s3://`` URIs.

    Raises:
        ConfigurationError: An unknown scheme.
    """
    if uri is not None and not isinstance(uri, str | os.PathLike):
        return uri
    text = resolve_registry_uri(os.fspath(uri) if uri is not None else None)
    if text.startswith("s3://"):
        from ._s3 import S3Store

        return S3Store(text, **s3_options)
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"unsupported registry scheme {scheme!r} in {text!r}; use s3://bucket/prefix, "
            "file:///path or a plain folder path"
        )
    if s3_options:
        raise ConfigurationError(
            f"S3 options {sorted(s3_options)} were given for the local registry {text!r}"
        )
    return LocalStore(text)
