"""Promoter commands: ``promoter run [NAME...] [--every SECONDS]`` and ``promoter policy``.

The promoter lives in the separate ``modelshelf_promoter`` package, which imports the SDK;
the SDK never imports it at module load, so these commands import it inside their bodies.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from .._errors import ModelshelfError
from ._app import AppState, cli, emit_json, json_option, pass_state, plural

if TYPE_CHECKING:
    from modelshelf_promoter import ModelRun

__all__ = ["policy_command", "promoter_group", "run_command"]


@cli.group("promoter")
def promoter_group() -> None:
    """Judge canaries: run the promoter, show or set a model's promotion policy."""


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C / SIGTERM end the loop after the current run; a second Ctrl-C aborts it."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("stopping after the current run (press Ctrl-C again to abort it)", err=True)

    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _describe(run: ModelRun) -> str:
    if run.status == "error":
        return f"{run.model}: error ({run.error_type}): {run.error}"
    if run.status == "no_canary":
        return f"{run.model}: no canary running"
    # The judge's reason starts with its action ("hold: ...", "advance 0.05 -> 0.25: ..."),
    # so the action is printed once, by the reason.
    action = str(run.action)
    reason = run.reason if run.reason.startswith(action) else f"{action}: {run.reason}"
    outcome = {
        "decided": "applied" if run.applied else "no change",
        "conflict": "conflict",
        "refused": "refused by the trust policy",
    }[run.status]
    if run.dry_run:
        outcome = "dry run, nothing written"
    generation = f"generation {run.generation}"
    if run.applied and run.new_generation is not None:
        generation = f"generation {run.generation} -> {run.new_generation}"
    fetched = f", {plural(run.read.fetched, 'new metric object')}" if run.read is not None else ""
    if run.report_error:
        fetched += f", {run.report_error}"
    corrupt = (
        f", {len(run.read.corrupt)} corrupt skipped"
        if run.read is not None and run.read.corrupt
        else ""
    )
    return f"{run.model}: {reason} [{outcome}, {generation}{fetched}{corrupt}]"


@promoter_group.command("run")
@click.argument("names", nargs=-1, metavar="[NAME...]")
@click.option(
    "--every",
    type=click.FloatRange(min=0.0, min_open=True),
    metavar="SECONDS",
    help="Run again every SECONDS until stopped (Ctrl-C or SIGTERM), for cron-less "
    "containers; without it, run once.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Judge and print what each run would do, writing nothing (no alias change, "
    "decision record, state or report).",
)
@json_option
@pass_state
def run_command(
    app: AppState, names: tuple[str, ...], every: float | None, dry_run: bool, as_json: bool
) -> None:
    """Judge the named models (default: every model with a canary) and apply decisions.

    With --json each run prints one JSON document. A single run exits with the error code
    of the first model that failed; a looping run reports failures and keeps going.
    """
    from modelshelf_promoter import Promoter

    from .._refs import check_name

    for name in names:
        check_name(name)
    # The promoter logs one JSON line per decision for log collectors; a terminal gets the
    # lines below instead (without this, Python's last-resort handler prints the errors).
    logging.getLogger("modelshelf.promoter").addHandler(logging.NullHandler())
    promoter = Promoter(app.registry)
    stop = threading.Event()
    first_error: ModelshelfError | None = None
    with _stop_on_signals(stop):
        while not stop.is_set():
            began = time.monotonic()
            runs = promoter.run(list(names) or None, dry_run=dry_run)
            if as_json:
                emit_json(
                    {
                        "registry": app.registry.uri,
                        "models": [r.model_dump(mode="json") for r in runs],
                    }
                )
            else:
                if not runs:
                    app.console.print("no model has a canary running")
                for run in runs:
                    app.console.print(_describe(run))
            if every is None:
                failed = [r for r in runs if r.status == "error"]
                if failed:
                    first_error = _error_of(failed[0])
                break
            stop.wait(max(0.0, every - (time.monotonic() - began)))
    if first_error is not None:
        raise first_error


def _error_of(run: ModelRun) -> ModelshelfError:
    error = ModelshelfError(f"promoter run of {run.model} failed: {run.error}")
    error.exit_code = run.exit_code or 1
    return error


@promoter_group.command("policy")
@click.argument("name")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Change one field (repeatable), e.g. --set alpha=0.01 --set steps=0.1,0.5,1 "
    "--set error_margin.kind=absolute. Validated as a whole before anything is written.",
)
@json_option
@pass_state
def policy_command(app: AppState, name: str, settings: tuple[str, ...], as_json: bool) -> None:
    """Show a model's promotion policy, or change fields of it with --set."""
    from modelshelf_promoter import load_policy, policy_key, update_policy

    key = policy_key(name)
    store = app.registry.store
    if settings:
        policy = update_policy(store, name, settings)
        source = "stored"
    else:
        policy, etag = load_policy(store, name)
        source = "stored" if etag is not None else "default"
    data: dict[str, Any] = policy.model_dump(mode="json")
    if as_json:
        emit_json({"model": name, "source": source, "key": key, "policy": data})
        return
    where = f"{store.uri}/{key}" if source == "stored" else "defaults (no policy stored)"
    app.console.print(f"{name}: promotion policy, {'updated in ' if settings else ''}{where}")
    for field, value in sorted(data.items()):
        app.console.print(f"  {field:<22} {json.dumps(value)}")
