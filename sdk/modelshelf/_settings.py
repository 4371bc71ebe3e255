"""Every setting modelshelf reads from the environment, in one place.

Each setting resolves at call time in the same order: the explicit argument, then the
environment variable, then the default. Nothing is cached at import, so a test or a
long-running process that changes the environment sees the change on the next call.

=============================== ============================================ ===================
variable                        meaning                                      default
=============================== ============================================ ===================
``MODELSHELF_REGISTRY``         the registry URI                             ``./.modelshelf``
``MODELSHELF_CACHE``            the local blob cache                         XDG cache
``MODELSHELF_USER``             recorded as ``created_by`` and on changes    ``user@host``
``MODELSHELF_PART_SIZE``        S3 multipart part size (``64MiB``)           64 MiB
``MODELSHELF_CONCURRENCY``      parallel S3 part transfers                   8
``MODELSHELF_MAX_ATTEMPTS``     attempts per S3 request                      6
``MODELSHELF_PART_CHECKSUMS``   SHA-256 per request and part                 on (off over http)
``MODELSHELF_DIRECT_HTTP``      small S3 requests on the direct transport    on
``MODELSHELF_POLL_INTERVAL``    seconds between a server's alias polls       10
``MODELSHELF_FLUSH_INTERVAL``   seconds between a server's metric flushes    60
``MODELSHELF_SERVER_ID``        names a serving process in metric keys       host-pid-random
``MODELSHELF_TRUST_POLICY``     a pinned trust policy file (replaces the     the registry's
                                registry's ``trust.json``)                   ``trust.json``
``MODELSHELF_KEY_PASSWORD``     password of an encrypted signing key (CLI)   none
``AWS_ENDPOINT_URL_S3``,        an S3-compatible endpoint                    AWS
``AWS_ENDPOINT_URL``
=============================== ============================================ ===================
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ._errors import ConfigurationError

__all__ = [
    "DEFAULT_REGISTRY",
    "cache_dir_setting",
    "endpoint_url_setting",
    "gc_grace_setting",
    "parse_seconds",
    "parse_bool",
    "parse_float",
    "parse_int",
    "parse_size",
    "parse_text",
    "registry_uri_setting",
    "setting",
    "trust_policy_setting",
    "user_setting",
]

DEFAULT_REGISTRY = "./.modelshelf"

_T = TypeVar("_T")
_MIB = 1024 * 1024
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": _MIB, "g": 1024 * _MIB}


def setting(arg: _T | None, env: str, default: _T, parse: Callable[[str, str], _T]) -> _T:
    """Resolve one setting: ``arg`` when given, else the variable ``env``, else ``default``.

    Args:
        arg: The caller's explicit value (``None`` means "not given").
        env: The environment variable to read.
        default: Used when neither is set (an empty variable counts as unset).
        parse: Turns the variable's text into a value; called as ``parse(text, env)``.

    Raises:
        ConfigurationError: The variable is set to something ``parse`` refuses.
    """
    if arg is not None:
        return arg
    text = os.environ.get(env)
    if text is None or not text.strip():
        return default
    return parse(text, env)


def parse_text(text: str, name: str) -> str:
    """A non-empty string, stripped."""
    return text.strip()


def parse_size(text: str, name: str) -> int:
    """``67108864``, ``64MiB``, ``64M`` or ``512k``."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise ConfigurationError(f"{name}={text!r} is not a size such as 67108864 or 64MiB")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def parse_int(text: str, name: str) -> int:
    """A whole number."""
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigurationError(f"{name}={text!r} is not a whole number") from None


def parse_float(text: str, name: str) -> float:
    """A number of seconds (or any float)."""
    try:
        return float(text.strip())
    except ValueError:
        raise ConfigurationError(f"{name}={text!r} is not a number") from None


def parse_bool(text: str, name: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no`` or ``on/off``."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name}={text!r} is not one of 1/0, true/false, yes/no, on/off")


_SECONDS_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$")
_SECONDS_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
DEFAULT_GC_GRACE = 60.0


def parse_seconds(text: str, name: str) -> float:
    """A positive duration: ``60``, ``0.05``, ``90s``, ``2m`` or ``1h``."""
    match = _SECONDS_RE.match(text)
    value = float(match.group(1)) * _SECONDS_UNITS[match.group(2)] if match else 0.0
    if value <= 0:
        raise ConfigurationError(
            f"{name}={text!r} is not a positive duration such as 60, 0.5, 90s or 2m"
        )
    return value


def gc_grace_setting(grace: float | None = None) -> float:
    """gc's grace period in seconds: ``grace``, else ``MODELSHELF_GC_GRACE``, else 60.

    Raises:
        ConfigurationError: Not a positive number of seconds.
    """
    value = setting(grace, "MODELSHELF_GC_GRACE", DEFAULT_GC_GRACE, parse_seconds)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(
            f"the gc grace must be a positive number of seconds, not {value!r}"
        )
    return float(value)


def registry_uri_setting(uri: str | None = None) -> str:
    """The registry URI: ``uri``, else ``MODELSHELF_REGISTRY``, else ``./.modelshelf``."""
    return setting(uri or None, "MODELSHELF_REGISTRY", DEFAULT_REGISTRY, parse_text)


def cache_dir_setting(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The blob cache: ``cache_dir``, else ``MODELSHELF_CACHE``, else the XDG cache folder."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    base = Path(setting(None, "XDG_CACHE_HOME", "~/.cache", parse_text)) / "modelshelf"
    return Path(setting(None, "MODELSHELF_CACHE", str(base), parse_text)).expanduser()


def user_setting(user: str | None = None) -> str:
    """Who is acting: ``user``, else ``MODELSHELF_USER``, else ``user@host``."""
    explicit = setting(user or None, "MODELSHELF_USER", None, parse_text)
    if explicit:
        return explicit
    try:
        name = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        name = "unknown"
    return f"{name}@{socket.gethostname()}"


def endpoint_url_setting(endpoint_url: str | None = None) -> str | None:
    """An S3 endpoint: the argument, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``.

    boto3 reads both variables itself; modelshelf reads them too because an explicit
    endpoint changes its defaults (path-style addressing, checksums over plain http).
    """
    found = setting(endpoint_url or None, "AWS_ENDPOINT_URL_S3", None, parse_text)
    return found or setting(None, "AWS_ENDPOINT_URL", None, parse_text)


def trust_policy_setting(path: str | os.PathLike[str] | None = None) -> Path | None:
    """A pinned trust policy file: ``path``, else ``MODELSHELF_TRUST_POLICY``, else none."""
    if path is not None:
        return Path(path).expanduser()
    found = setting(None, "MODELSHELF_TRUST_POLICY", None, parse_text)
    return Path(found).expanduser() if found else None
