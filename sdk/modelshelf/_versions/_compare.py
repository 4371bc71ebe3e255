"""Versions side by side, and two versions diffed: the data behind ``compare`` and ``diff``.

Pure: manifests in (and which versions held which alias), tables out; the registry facade
reads the manifests and the alias history and hands them here. A comparison is a list of rows
(one per card field, flattened to dotted paths) with one cell per version; each cell says
how it differs from the cell before it (the previous version in the comparison): a
numeric ``delta`` for numbers, ``added`` / ``removed`` items for lists, ``changed`` always.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._card import ModelVersion

__all__ = [
    "Cell",
    "CompareRow",
    "Comparison",
    "FieldChange",
    "FileChange",
    "VersionColumn",
    "VersionDiff",
    "Role",
    "compare_versions",
    "diff_versions",
    "flatten",
]

Section = Literal[
    "version",
    "aliases",
    "card",
    "performance",
    "hyperparameters",
    "training_data",
    "input_schema",
    "output_schema",
]
_SECTIONS: tuple[Section, ...] = (
    "version",
    "aliases",
    "card",
    "performance",
    "hyperparameters",
    "training_data",
    "input_schema",
    "output_schema",
)
_NESTED = ("performance", "hyperparameters", "training_data", "input_schema", "output_schema")
_REGISTRY_FIELDS = {"name", "version", "created_at", "updated_at"}
_MISSING = object()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"a.b": leaf}``; lists and scalars are leaves.

    An empty mapping is kept as a leaf (``{}``) so that "declared empty" differs from
    "not declared".
    """
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key in sorted(value):
            out.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value} if prefix else {}


class VersionColumn(BaseModel):
    """One compared version: who made it, when, how big, and its place in the aliases."""

    model_config = ConfigDict(frozen=True)

    version: str
    created_at: datetime
    created_by: str
    size: int
    files: int
    ever_active: bool
    ever_canary: bool
    roles: list[Literal["active", "canary"]] = Field(default_factory=list)  # now


class Cell(BaseModel):
    """One version's value of one field, and how it differs from the previous version's.

    Attributes:
        value: The JSON value; ``None`` with ``present=False`` when the card lacks it.
        present: Whether the card has this field.
        changed: Whether it differs from the previous column (False in the first column).
        delta: ``value - previous`` when both are numbers.
        added: List items not in the previous value (lists only).
        removed: List items of the previous value that are gone.
    """

    model_config = ConfigDict(frozen=True)

    value: Any = None
    present: bool = False
    changed: bool = False
    delta: float | None = None
    added: list[Any] | None = None
    removed: list[Any] | None = None


class CompareRow(BaseModel):
    """One field across the compared versions."""

    model_config = ConfigDict(frozen=True)

    section: Section
    field: str
    cells: list[Cell]

    @property
    def differs(self) -> bool:
        """Whether any two versions disagree on this field."""
        first = self.cells[0] if self.cells else None
        return any(
            (c.present, _key(c.value)) != (first.present, _key(first.value))
            for c in self.cells[1:]
            if first is not None
        )


class Comparison(BaseModel):
    """Versions of one model side by side (``modelshelf compare``)."""

    model_config = ConfigDict(frozen=True)

    model: str
    versions: list[VersionColumn]
    rows: list[CompareRow]

    def diff_only(self) -> Comparison:
        """The same comparison with only the rows where the versions differ."""
        return self.model_copy(update={"rows": [r for r in self.rows if r.differs]})

    def row(self, section: str, field: str) -> CompareRow:
        """The row of one field.

        Raises:
            KeyError: No version has that field.
        """
        for r in self.rows:
            if r.section == section and r.field == field:
                return r
        raise KeyError(f"{section}.{field}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with each row's ``differs`` spelled out."""
        data = self.model_dump(mode="json")
        for row, out in zip(self.rows, data["rows"], strict=True):
            out["differs"] = row.differs
        return data


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _cell(value: Any, previous: Any, first: bool) -> Cell:
    present = value is not _MISSING
    shown = value if present else None
    if first:
        return Cell(value=shown, present=present)
    prev_present = previous is not _MISSING
    changed = (present, _key(shown)) != (prev_present, _key(previous if prev_present else None))
    delta = None
    added = removed = None
    if present and prev_present and _is_number(value) and _is_number(previous):
        delta = float(value) - float(previous)
    if present and prev_present and isinstance(value, list) and isinstance(previous, list):
        before = {_key(v) for v in previous}
        after = {_key(v) for v in value}
        added = [v for v in value if _key(v) not in before]
        removed = [v for v in previous if _key(v) not in after]
    return Cell(
        value=shown, present=present, changed=changed, delta=delta, added=added, removed=removed
    )


def _fields(manifest: ModelVersion) -> dict[tuple[Section, str], Any]:
    card = manifest.card.model_dump(mode="json")
    out: dict[tuple[Section, str], Any] = {
        ("version", "created_at"): manifest.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
        ("version", "created_by"): manifest.created_by,
        ("version", "size"): manifest.size,
        ("version", "files"): len(manifest.files),
        ("version", "schema_change_allowed"): manifest.schema_change_allowed,
    }
    for key in sorted(card):
        value = card[key]
        if key in _REGISTRY_FIELDS or value is None or value == [] and key == "limitations":
            continue
        if key in _NESTED:
            section: Section = key  # type: ignore[assignment]
            flat = flatten(value)
            if not flat:
                out[(section, "")] = value  # declared but empty
            for path, leaf in flat.items():
                if leaf is not None:  # Performance's unset fields dump as null
                    out[(section, path)] = leaf
        else:
            out[("card", key)] = value
    return out


Role = Literal["active", "canary"]


def compare_versions(
    manifests: Sequence[ModelVersion],
    *,
    ever_active: Collection[str] = (),
    ever_canary: Collection[str] = (),
    now: Mapping[Role, str | None] | None = None,
) -> Comparison:
    """Compare manifests of one model, in the order given.

    Args:
        manifests: The versions to compare (semver order reads best).
        ever_active: Versions that were ever active (from the alias history).
        ever_canary: Versions that were ever canary.
        now: The current ``active`` and ``canary`` versions.

    Raises:
        ValueError: No manifests, or manifests of different models.
    """
    if not manifests:
        raise ValueError("compare needs at least one version")
    names = {m.name for m in manifests}
    if len(names) != 1:
        raise ValueError(f"compare takes versions of one model, got {sorted(names)}")
    current = now or {}
    columns = []
    for m in manifests:
        roles: list[Role] = [r for r in ("active", "canary") if current.get(r) == m.version]
        columns.append(
            VersionColumn(
                version=m.version,
                created_at=m.created_at,
                created_by=m.created_by,
                size=m.size,
                files=len(m.files),
                ever_active=m.version in ever_active,
                ever_canary=m.version in ever_canary,
                roles=roles,
            )
        )
    per_version = [_fields(m) for m in manifests]
    for values, column in zip(per_version, columns, strict=True):
        values[("aliases", "ever_active")] = column.ever_active
        values[("aliases", "ever_canary")] = column.ever_canary
        values[("aliases", "now")] = ", ".join(column.roles) or "-"
    keys = sorted(
        {k for values in per_version for k in values},
        key=lambda k: (_SECTIONS.index(k[0]), k[1]),
    )
    rows = []
    for section, field in keys:
        cells = []
        previous: Any = _MISSING
        for i, values in enumerate(per_version):
            value = values.get((section, field), _MISSING)
            cells.append(_cell(value, previous, first=i == 0))
            previous = value
        rows.append(CompareRow(section=section, field=field, cells=cells))
    return Comparison(model=manifests[0].name, versions=columns, rows=rows)


class FieldChange(BaseModel):
    """One card field that differs between two versions."""

    model_config = ConfigDict(frozen=True)

    section: Section
    field: str
    old: Any = None
    new: Any = None
    old_present: bool
    new_present: bool
    delta: float | None = None
    added: list[Any] | None = None
    removed: list[Any] | None = None


class FileChange(BaseModel):
    """One file path whose presence or content differs between two versions."""

    model_config = ConfigDict(frozen=True)

    path: str
    change: Literal["added", "removed", "modified"]
    old_size: int | None = None
    new_size: int | None = None
    old_sha256: str | None = None
    new_sha256: str | None = None


class VersionDiff(BaseModel):
    """Two versions' cards and files diffed (``modelshelf diff A B``)."""

    model_config = ConfigDict(frozen=True)

    old: str
    new: str
    card: list[FieldChange]
    files: list[FileChange]
    files_unchanged: int

    @property
    def identical(self) -> bool:
        """No card field and no file differs."""
        return not self.card and not self.files


def diff_versions(old: ModelVersion, new: ModelVersion) -> VersionDiff:
    """What changed from ``old`` to ``new``: card fields (flattened) and files by path.

    Registry bookkeeping (``created_at``, ``created_by``) is part of the diff; the card's
    own ``name``/``version``/dates are not (they always differ).
    """
    a, b = _fields(old), _fields(new)
    changes = []
    for key in sorted(set(a) | set(b), key=lambda k: (_SECTIONS.index(k[0]), k[1])):
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        cell = _cell(vb, va, first=False)
        if not cell.changed:
            continue
        changes.append(
            FieldChange(
                section=key[0],
                field=key[1],
                old=None if va is _MISSING else va,
                new=cell.value,
                old_present=va is not _MISSING,
                new_present=cell.present,
                delta=cell.delta,
                added=cell.added,
                removed=cell.removed,
            )
        )
    old_files = {f.path: f for f in old.files}
    new_files = {f.path: f for f in new.files}
    files = []
    same = 0
    for path in sorted(set(old_files) | set(new_files)):
        fa, fb = old_files.get(path), new_files.get(path)
        if fa is not None and fb is not None:
            if fa.sha256 == fb.sha256:
                same += 1
                continue
            files.append(
                FileChange(
                    path=path,
                    change="modified",
                    old_size=fa.size,
                    new_size=fb.size,
                    old_sha256=fa.sha256,
                    new_sha256=fb.sha256,
                )
            )
        elif fb is not None:
            files.append(
                FileChange(path=path, change="added", new_size=fb.size, new_sha256=fb.sha256)
            )
        elif fa is not None:
            files.append(
                FileChange(path=path, change="removed", old_size=fa.size, old_sha256=fa.sha256)
            )
    return VersionDiff(old=old.ref, new=new.ref, card=changes, files=files, files_unchanged=same)
