"""Turn a registry URI into a store; settings resolved at call time, never at import."""

from __future__ import annotations

import os
from typing import Any

from .._errors import ConfigurationError
from .._settings import registry_uri_setting
from ._local import LocalStore
from ._protocol import Store

__all__ = ["open_store"]


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
    text = registry_uri_setting(os.fspath(uri) if uri is not None else None)
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
