"""Commands for immutable versions: push, list, show, pull, verify, and the card schema."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from .._card import ModelCard, ModelVersion, utcnow
from .._errors import CorruptObjectError, InvalidCardError, ModelNotFoundError
from .._refs import check_name, parse_ref
from .._registry import Registry
from .._versions import model_summaries, newest_versions
from ._app import (
    AppState,
    cli,
    emit_json,
    format_time,
    human_size,
    json_option,
    pass_state,
    plural,
    transfer_progress,
)
from ._trust import approval_rows, key_password_option, signature_rows

__all__ = ["card", "list_command", "pull", "push", "show", "verify"]


def _read_card_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidCardError(f"cannot read card file {path!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidCardError(f"card file {path!r} is not UTF-8 text") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidCardError(
            f"card file {path!r} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}"
        ) from exc
    if not isinstance(data, dict):
        raise InvalidCardError(
            f"card file {path!r} must hold a JSON object, not {type(data).__name__}"
        )
    return data


def _source_size(path: str) -> int | None:
    """Total bytes a push will send, for the progress bar (``None`` when unknown)."""
    root = Path(path).expanduser()
    try:
        if root.is_file():
            return root.stat().st_size
        if root.is_dir():
            return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    except OSError:
        pass  # the registry reports unreadable sources properly
    return None


def _files_json(version: ModelVersion) -> list[dict[str, Any]]:
    return [f.model_dump(mode="json") for f in version.files]


@cli.command()
@click.argument("name")
@click.argument("path")
@click.option("--version", "version", metavar="V", help="An explicit MAJOR.MINOR.PATCH.")
@click.option(
    "--bump",
    type=click.Choice(["major", "minor", "patch"]),
    help="Take the next version above the highest one; a model's first version is 1.0.0 "
    "whatever the bump (default: 1.0.0, then minor).",
)
@click.option("--card", "card_file", metavar="FILE", help="The model card, a JSON file.")
@click.option(
    "--allow-schema-change",
    is_flag=True,
    help="Accept an input/output schema change without a MAJOR bump (recorded).",
)
@click.option(
    "--sign-key",
    metavar="PEM",
    help="Sign the version with this EC private key (an OMS bundle; see 'modelshelf sign').",
)
@key_password_option
@json_option
@pass_state
def push(
    state: AppState,
    name: str,
    path: str,
    version: str | None,
    bump: str | None,
    card_file: str | None,
    allow_schema_change: bool,
    sign_key: str | None,
    key_password: str | None,
    as_json: bool,
) -> None:
    """Push the file or folder PATH as a new version of NAME.

    The first version of a model is 1.0.0 (whatever --bump says), later ones bump MINOR;
    --version gives one explicitly. A card that states "version" asks for exactly that
    version, and its "name" must be NAME (drop both fields to let the registry fill them in).
    Versions are immutable: an explicit version that is taken fails (exit 31) unless the
    same files and card were pushed there, which returns that version.
    """
    check_name(name)
    card = _read_card_file(card_file) if card_file else None
    started = utcnow()
    with transfer_progress(f"push {name}", _source_size(path)) as progress:
        pushed = state.registry.push(
            name,
            os.fspath(Path(path)),
            version=version,
            bump=bump,
            card=card,
            allow_schema_change=allow_schema_change,
            progress=progress,
            sign_key=sign_key,
            key_password=key_password,
        )
    # An identical re-push returns the version committed earlier instead of a new one.
    created = pushed.created_at >= started
    for digest in pushed.repaired_blobs:
        click.echo(
            f"warning: the stored blob {digest} did not match its digest and was replaced "
            "with this push's bytes",
            err=True,
        )
    if as_json:
        extra: dict[str, Any] = {"created": created, "repaired_blobs": pushed.repaired_blobs}
        if sign_key is not None:
            extra["signatures"] = signature_rows(state.registry.signatures(pushed.ref))
        emit_json({**pushed.model_dump(mode="json"), **extra})
        return
    summary = f"{plural(len(pushed.files), 'file')}, {human_size(pushed.size)}"
    if version is None and bump is None and card and card.get("version") is not None:
        summary += ', the version from the card\'s "version" field'
    if created:
        state.console.print(f"pushed {pushed.ref} ({summary}) to {state.registry.uri}")
    if sign_key is not None:
        state.console.print(Text(f"signed {pushed.ref} with {sign_key}"))
    else:
        state.console.print(
            f"{pushed.ref} already holds these files and this card "
            f"(pushed by {pushed.created_by} at {format_time(pushed.created_at)}); nothing to do"
        )


@cli.command("list")
@click.argument("name", required=False)
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="With NAME: show only the newest N versions.",
)
@click.option("--all", "show_all", is_flag=True, help="With NAME: show every version.")
@json_option
@pass_state
def list_command(
    state: AppState, name: str | None, last: int, show_all: bool, as_json: bool
) -> None:
    """List the models, or the versions of NAME (the newest 20 unless --last or --all)."""
    registry = state.registry
    if name is None:
        rows: list[dict[str, Any]] = [
            {"name": s.name, "versions": s.versions, "latest": s.latest}
            for s in model_summaries(registry.store)
        ]
        if as_json:
            emit_json(rows)
            return
        if not rows:
            state.console.print(f"no models in {registry.uri}")
            return
        table = Table("model", "versions", "latest")
        for row in rows:
            table.add_row(row["name"], str(row["versions"]), row["latest"])
        state.console.print(table)
        return

    check_name(name)
    # The default view comes from the version head's recent list when it checks out
    # (docs/design.md, "Scale: indexes and hints"); otherwise, and for --all, a listing.
    newest = None if show_all else newest_versions(registry.store, name, last)
    versions = registry.versions(name) if newest is None else newest
    if not versions:
        raise ModelNotFoundError(f"model {name!r} has no versions in {registry.uri}")
    shown = versions if show_all else versions[-last:]

    def read(version: str) -> ModelVersion | str:
        try:
            return registry.get(f"{name}:{version}")
        except CorruptObjectError as exc:
            click.echo(f"warning: skipped {name}:{version}: {' '.join(str(exc).split())}", err=True)
            return version  # listed, marked corrupt

    with ThreadPoolExecutor(max(1, min(16, len(shown)))) as pool:
        manifests = list(pool.map(read, shown))
    readable = [m for m in manifests if isinstance(m, ModelVersion)]
    collected = registry.collected(name, readable)
    if as_json:
        emit_json(
            [
                {
                    "name": m.name,
                    "version": m.version,
                    "created_at": m.created_at.isoformat(),
                    "created_by": m.created_by,
                    "size": m.size,
                    "files": len(m.files),
                    "collected": m.version in collected,
                }
                if isinstance(m, ModelVersion)
                else {"name": name, "version": m, "corrupt": True}
                for m in manifests
            ]
        )
        return
    table = Table("version", "created at", "created by", "size", "files", "blobs")
    for m in manifests:
        if not isinstance(m, ModelVersion):
            table.add_row(m, "corrupt manifest", "", "", "", "")
            continue
        table.add_row(
            m.version,
            format_time(m.created_at),
            m.created_by,
            human_size(m.size),
            str(len(m.files)),
            "collected by gc" if m.version in collected else "present",
        )
    state.console.print(table)
    if newest is not None and len(shown) == last:
        state.console.print(f"the newest {last} versions; --last N or --all for more")
    elif len(shown) < len(versions):
        state.console.print(
            f"the newest {len(shown)} of {len(versions)} versions; --last N or --all for more"
        )


def _readable_manifest(registry: Registry, ref: str) -> ModelVersion:
    """The manifest of ``ref``; for the latest version, the newest one that is not corrupt."""
    try:
        return registry.get(ref)
    except CorruptObjectError as exc:
        parsed = parse_ref(ref)
        if parsed.version is not None or parsed.alias is not None:
            raise
        for version in reversed(registry.versions(parsed.name)[:-1]):
            try:
                manifest = registry.get(f"{parsed.name}:{version}")
            except CorruptObjectError:
                continue
            problem = " ".join(str(exc).split())
            click.echo(f"warning: skipped the latest version: {problem}", err=True)
            return manifest
        raise


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


@cli.command()
@click.argument("ref")
@json_option
@pass_state
def show(state: AppState, ref: str, as_json: bool) -> None:
    """Show a version's card, files, signatures and approvals.

    REF is NAME or NAME:latest (the highest version), NAME:MAJOR.MINOR.PATCH, or
    NAME@active / NAME@canary (the version the alias points at). Signatures and approvals
    are checked against the trust policy in force.
    """
    registry = state.registry
    manifest = _readable_manifest(registry, ref)
    signatures = registry.signatures(manifest.ref)
    approvals = registry.approvals(manifest.ref)
    missing = registry.missing_blobs(manifest)
    if as_json:
        emit_json(
            {
                **manifest.model_dump(mode="json"),
                "signatures": signature_rows(signatures),
                "approvals": approval_rows(approvals),
                "collected": bool(missing),
                "missing_files": [entry.path for entry in missing],
            }
        )
        return
    console = state.console
    card = manifest.card
    console.print(manifest.ref, style="bold")
    rows: list[tuple[str, str]] = [
        ("pushed", f"{format_time(manifest.created_at)} by {manifest.created_by}"),
        ("size", f"{human_size(manifest.size)} in {plural(len(manifest.files), 'file')}"),
    ]
    if missing:
        rows.append(
            (
                "blobs",
                f"collected by gc: {len(missing)} of {len(manifest.files)} files are gone "
                "(pull and load fail; no alias may point here)",
            )
        )
    if manifest.schema_change_allowed:
        rows.append(("schema change", "allowed without a MAJOR bump"))
    fixed = ("description", "author", "framework", "algorithm", "loader")
    rows += [(key, str(getattr(card, key))) for key in fixed if getattr(card, key)]
    rows += [
        (key, format_time(getattr(card, key)))
        for key in ("created_at", "updated_at")
        if getattr(card, key) is not None
    ]
    if card.hyperparameters:
        rows.append(("hyperparameters", _compact(card.hyperparameters)))
    for key in ("training_data", "performance"):
        value = getattr(card, key)
        if value is not None:
            rows.append((key.replace("_", " "), _compact(value.model_dump(exclude_none=True))))
    for key in ("input_schema", "output_schema"):
        if getattr(card, key) is not None:
            rows.append((key.replace("_", " "), _compact(getattr(card, key))))
    rows += [("limitation", text) for text in card.limitations]
    rows += [(key, _compact(value)) for key, value in sorted((card.model_extra or {}).items())]
    details = Table.grid(padding=(0, 2))
    details.add_column(style="bold")
    details.add_column(overflow="fold")
    for key, value in rows:
        details.add_row(key, value)
    console.print(details)
    files = Table("path", "size", "sha256")
    for entry in manifest.files:
        files.add_row(Text(entry.path), human_size(entry.size), entry.sha256[:16])
    console.print(files)
    if signatures:
        table = Table("signed by", "key id", "status")
        for sig in signatures:
            status = "trusted" if sig.trusted else f"not trusted: {sig.problem}"
            table.add_row(Text(sig.signer or "unknown key"), Text(sig.key_id[:16]), Text(status))
        console.print(table)
    else:
        console.print("not signed")
    if approvals:
        table = Table("gate", "approved by", "at", "status", "comment")
        for a in approvals:
            table.add_row(
                a.gate,
                Text(a.approver or a.key_id[:16]),
                Text(a.approved_at or ""),
                "valid" if a.valid else Text(f"invalid: {a.problem}"),
                Text(a.comment or ""),
            )
        console.print(table)


@cli.command()
@click.argument("ref")
@click.option(
    "-o",
    "--output",
    "dest",
    metavar="DIR",
    help="Folder to write the files into (default: ./NAME-VERSION).",
)
@click.option(
    "--card/--no-card",
    "card",
    default=None,
    help="Write modelshelf-card.json beside the files (default: when a trusted signature "
    "is written as model.sig).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace files in DIR that differ from the version's (refused by default).",
)
@json_option
@pass_state
def pull(
    state: AppState, ref: str, dest: str | None, card: bool | None, force: bool, as_json: bool
) -> None:
    """Download a version's files, verified.

    Every file is checked against its sha256 before it is placed in DIR. A file already in
    DIR with the same content is kept; one with other content is refused (exit 34) unless
    --force is given. A version signed by a trusted key gets its signature as model.sig and
    its card as modelshelf-card.json, which stock 'model_signing verify key DIR' checks.
    """
    registry = state.registry
    manifest = registry.get(ref)
    target = Path(dest) if dest else Path(f"{manifest.name}-{manifest.version}")
    with transfer_progress(f"pull {manifest.ref}", manifest.size) as progress:
        registry.pull(manifest.ref, target, progress=progress, card=card, overwrite=force)
    if as_json:
        emit_json(
            {
                "name": manifest.name,
                "version": manifest.version,
                "dest": str(target.resolve()),
                "files": _files_json(manifest),
                "size": manifest.size,
            }
        )
        return
    state.console.print(
        f"pulled {manifest.ref} into {target} "
        f"({plural(len(manifest.files), 'file')}, {human_size(manifest.size)})"
    )


@cli.command()
@click.argument("ref")
@json_option
@pass_state
def verify(state: AppState, ref: str, as_json: bool) -> None:
    """Re-hash every blob of a version.

    Downloads each blob again, bypassing the local cache; a mismatch exits 50.
    """
    registry = state.registry
    manifest = registry.get(ref)
    with transfer_progress(f"verify {manifest.ref}", manifest.size) as progress:
        registry.verify(manifest.ref, progress=progress)
    if as_json:
        emit_json(
            {
                "name": manifest.name,
                "version": manifest.version,
                "ok": True,
                "files": _files_json(manifest),
                "size": manifest.size,
            }
        )
        return
    state.console.print(
        f"ok {manifest.ref}: {plural(len(manifest.files), 'file')}, "
        f"{human_size(manifest.size)} match their sha256"
    )


@cli.group()
def card() -> None:
    """Model cards."""


@card.command("schema")
@json_option
def card_schema(as_json: bool) -> None:
    """Print the JSON Schema of a model card (for --card files)."""
    del as_json  # the schema is JSON either way; the flag is accepted for uniformity
    emit_json(ModelCard.model_json_schema())
