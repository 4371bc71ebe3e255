"""Operations on the store itself: probing a backend, and retention."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from .._errors import ConfigurationError, InvalidInputError
from .._settings import parse_seconds
from .._stores._doctor import run_doctor
from .._versions import parse_age
from ._app import AppState, cli, emit_json, human_size, json_option, pass_state, plural

__all__ = ["doctor", "gc"]


@cli.command()
@json_option
@pass_state
def doctor(state: AppState, as_json: bool) -> None:
    """Check that the store honours the conditional writes modelshelf relies on."""
    store = state.registry.store
    checks = run_doctor(store)
    failed = [c for c in checks if not c.ok]
    if as_json:
        emit_json(
            {
                "registry": store.uri,
                "ok": not failed,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
            }
        )
    else:
        table = Table(title=f"modelshelf doctor: {store.uri}")
        table.add_column("check")
        table.add_column("verdict")
        table.add_column("detail")
        for check in checks:
            verdict = Text("PASS", style="green") if check.ok else Text("FAIL", style="red")
            table.add_row(check.name, verdict, check.detail)
        state.console.print(table)
    if failed:
        raise ConfigurationError(
            f"{len(failed)} of {len(checks)} checks failed on {store.uri}: "
            f"{', '.join(c.name for c in failed)}; concurrent writers would not be safe here"
        )
    if not as_json:
        state.console.print("verdict: this store is safe for modelshelf")


@cli.command()
@click.argument("name")
@click.option("--keep-last", default=10, show_default=True, help="Always keep the newest N.")
@click.option(
    "--older-than",
    default=None,
    metavar="AGE",
    show_default="none: age does not protect a version",
    help="Only versions older than this expire, e.g. 365d, 12h or 30m.",
)
@click.option(
    "--orphan-grace",
    default="1h",
    show_default=True,
    help="Leave unreferenced blobs younger than this (pushes in flight).",
)
@click.option(
    "--grace",
    "grace_text",
    default=None,
    help="Wait this long between condemning blobs and deleting them (60s, 2m; default "
    "MODELSHELF_GC_GRACE or 60s).",
)
@click.option("--dry-run/--yes", "dry_run", default=True, help="Only show (default) or delete.")
@json_option
@pass_state
def gc(
    state: AppState,
    name: str,
    keep_last: int,
    older_than: str | None,
    orphan_grace: str,
    grace_text: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete blobs no kept version needs (versions ever active or canary are kept).

    With --yes the blobs are first condemned, then deleted after the grace period once a
    re-read confirms no version committed or aliased meanwhile needs them.
    """
    age = parse_age(older_than) if older_than else None
    grace = parse_age(orphan_grace)
    condemn_grace = None
    if grace_text is not None:
        try:
            condemn_grace = parse_seconds(grace_text, "--grace")
        except ConfigurationError as exc:
            raise InvalidInputError(str(exc)) from None
    plan = state.registry.gc(
        name,
        keep_last=keep_last,
        older_than=age,
        orphan_grace=grace,
        dry_run=dry_run,
        grace=condemn_grace,
    )
    if as_json:
        emit_json(
            {
                "name": name,
                "dry_run": dry_run,
                "kept_versions": plan.kept_versions,
                "protected_versions": plan.protected_versions,
                "expired_versions": plan.expired_versions,
                "blobs": [key for key, _ in plan.delete_blobs],
                "orphan_blobs": plan.orphan_blobs,
                "spared_blobs": plan.spared_blobs,
                "bytes_freed": plan.bytes_freed,
                "stale_uploads": plan.stale_uploads,
                "corrupt_versions": plan.corrupt_versions,
            }
        )
        return
    verb = "would free" if dry_run else "freed"
    expired = plural(len(plan.expired_versions), "expired version")
    protected = len(plan.protected_versions)
    state.console.print(
        f"{name}: {expired} ({', '.join(plan.expired_versions) or 'none'}), "
        f"{protected} kept because {'it was' if protected == 1 else 'they were'} active or "
        f"canary, {len(plan.kept_versions)} kept as recent"
    )
    state.console.print(
        f"{verb} {human_size(plan.bytes_freed)} in {plural(len(plan.delete_blobs), 'blob')} "
        f"({plural(len(plan.orphan_blobs), 'orphan')}); "
        f"{plural(plan.stale_uploads, 'stale multipart upload')}"
        + (" (run with --yes to delete)" if dry_run else " aborted")
    )
    if plan.spared_blobs:
        state.console.print(
            f"spared {len(plan.spared_blobs)} condemned blobs that a version committed or "
            "aliased meanwhile needs"
        )
