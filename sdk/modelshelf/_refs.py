"""Model names, versions and references, checked before anything touches the store."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from packaging.version import Version

from ._errors import InvalidNameError, InvalidReferenceError, InvalidVersionError

__all__ = [
    "ALIASES",
    "FIRST_VERSION",
    "Bump",
    "ModelRef",
    "bump_version",
    "check_name",
    "parse_ref",
    "parse_version",
    "version_sort_key",
]

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
# packaging accepts "1.2", "v1.2.0", "1.2.0rc1", "01.2.0"; a registry key must not.
_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")

Bump = Literal["major", "minor", "patch"]
ALIASES: tuple[str, ...] = ("active", "canary")


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid model name.

    Raises:
        InvalidNameError: When it does not match ``[a-z0-9][a-z0-9._-]{0,127}`` or holds ``..``.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"invalid model name {name!r}: use 1-128 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit, without '..' (e.g. 'iris' or 'fraud-v2')"
        )
    return name


def parse_version(text: object) -> Version:
    """Parse a strict ``MAJOR.MINOR.PATCH`` version.

    Raises:
        InvalidVersionError: For anything but three integers without leading zeros.
    """
    if not isinstance(text, str) or not _VERSION.fullmatch(text):
        raise InvalidVersionError(
            f"invalid version {text!r}: use exactly MAJOR.MINOR.PATCH, three integers "
            "without leading zeros (e.g. 1.2.0)"
        )
    return Version(text)


def version_sort_key(text: str) -> tuple[int, int, int]:
    """Sort key for a valid version string (semver order, not string order)."""
    major, minor, patch = (int(part) for part in text.split("."))
    return (major, minor, patch)


FIRST_VERSION = "1.0.0"
"""A model's first version whatever the bump: the initial release, not a 0.x draft."""


def bump_version(current: str | None, bump: str) -> str:
    """The version one ``bump`` above ``current``.

    ``None`` means nothing is committed yet: the first version is ``1.0.0`` for every bump
    (a ``minor`` bump of nothing is the first release, not ``0.1.0``).

    Raises:
        InvalidVersionError: For an unknown bump, or one that leaves the grammar.
    """
    if bump not in ("major", "minor", "patch"):
        raise InvalidVersionError(f"invalid bump {bump!r}: use 'major', 'minor' or 'patch'")
    if current is None:
        return FIRST_VERSION
    major, minor, patch = version_sort_key(current)
    if bump == "major":
        bumped = f"{major + 1}.0.0"
    elif bump == "minor":
        bumped = f"{major}.{minor + 1}.0"
    else:
        bumped = f"{major}.{minor}.{patch + 1}"
    if not _VERSION.fullmatch(bumped):
        raise InvalidVersionError(
            f"a {bump} bump of {current} gives {bumped}, outside MAJOR.MINOR.PATCH (each part "
            "at most 9 digits); bump a higher part or give an explicit version"
        )
    return bumped


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: ``iris``, ``iris:latest``, ``iris:1.2.0``, ``iris@active``.

    Exactly one of ``version`` and ``alias`` is set, or neither (meaning latest).
    """

    name: str
    version: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version:
            return f"{self.name}:{self.version}"
        if self.alias:
            return f"{self.name}@{self.alias}"
        return f"{self.name}:latest"


def parse_ref(ref: str | ModelRef) -> ModelRef:
    """Parse a model reference.

    Raises:
        InvalidReferenceError: With the accepted forms.
    """
    if isinstance(ref, ModelRef):
        return ref
    hint = "use NAME, NAME:latest, NAME:MAJOR.MINOR.PATCH, NAME@active or NAME@canary"
    if not isinstance(ref, str) or not ref:
        raise InvalidReferenceError(f"invalid model reference {ref!r}: {hint}")
    if "@" in ref and ":" in ref:
        raise InvalidReferenceError(f"invalid model reference {ref!r}: {hint}")
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            if alias not in ALIASES:
                raise InvalidReferenceError(
                    f"unknown alias {alias!r} in {ref!r}: the aliases are 'active' and 'canary'"
                )
            return ModelRef(check_name(name), alias=alias)
        if ":" in ref:
            name, version = ref.split(":", 1)
            if version == "latest":
                return ModelRef(check_name(name))
            parse_version(version)
            return ModelRef(check_name(name), version=version)
        return ModelRef(check_name(ref))
    except (InvalidNameError, InvalidVersionError) as exc:
        raise InvalidReferenceError(f"invalid model reference {ref!r}: {exc}; {hint}") from exc
