"""Alias commands: ``alias show|set``, ``canary start|ratio|abort``, ``promote``, ``rollback``,
``history`` and ``served-at``.

Every change goes through the registry's linearizable update, so it is recorded in the
history with ``--reason``; the readers take ``--json``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from .._aliases import Aliases, HistoryRecord, parse_instant, read_aliases
from .._errors import InvalidAliasesError, InvalidInputError, KeyNotFoundError, ModelNotFoundError
from .._refs import check_name
from .._registry import Registry
from ..layout import manifest_key
from ._app import AppState, cli, emit_json, format_time, json_option, pass_state
from ._reasons import split_reason

__all__ = [
    "alias_group",
    "canary_group",
    "history_command",
    "promote_command",
    "rollback_command",
    "served_at_command",
]

_reason_option = click.option(
    "--reason", metavar="TEXT", help="Why: recorded in the alias history with who and when."
)


def _state_json(state: Aliases) -> dict[str, Any]:
    data: dict[str, Any] = state.model_dump(mode="json")
    return data


def _require_model(registry: Registry, name: str) -> None:
    """Exit like ``show`` (21) for a model that was never pushed, instead of printing nothing."""
    if not registry.versions(name):
        raise ModelNotFoundError(f"model {name!r} has no versions in {registry.uri}")


def _checked_aliases(registry: Registry, name: str) -> Aliases:
    """The stored aliases, refusing an object that names versions that are not committed."""
    state, _ = read_aliases(registry.store, check_name(name))
    if state.generation == 0:
        _require_model(registry, name)
    for role in ("active", "canary"):
        version = getattr(state, role)
        if version is None:
            continue
        try:
            registry.store.head(manifest_key(name, version))
        except KeyNotFoundError as exc:
            raise InvalidAliasesError(
                f"invalid aliases object for {name!r} in {registry.uri}: {role} names "
                f"{version}, which is not a committed version; servers refuse it and keep "
                f"their last good state (fix it with 'modelshelf alias set {name} VERSION')"
            ) from exc
    return state


def _print_state(state_obj: AppState, name: str, state: Aliases) -> None:
    console = state_obj.console
    if state.generation == 0:
        console.print(f"{name}: no aliases set (generation 0)")
        return
    console.print(f"{name}  generation {state.generation}")
    console.print(f"  active  {state.active or '-'}")
    if state.canary is not None:
        console.print(f"  canary  {state.canary}  ratio {state.ratio:.4g} ({state.ratio:.1%})")
    else:
        console.print("  canary  -")
    when = format_time(state.updated_at) if state.updated_at else "-"
    console.print(f"  updated {when} by {state.updated_by or '-'}")
    if state.reason:
        summary, details = split_reason(state.reason, None)
        console.print(f"  reason  {summary}")
        for key, value in details:
            console.print(f"          {key}: {value}")


def _report_change(app: AppState, name: str, action: str, state: Aliases, as_json: bool) -> None:
    if as_json:
        emit_json({"action": action, "model": name, "aliases": _state_json(state)})
        return
    _print_state(app, name, state)


def _parse_ratio(value: str) -> float:
    text = value.strip()
    try:
        ratio = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a ratio; give a share such as 0.05 or 5%"
        ) from None
    if not 0.0 <= ratio <= 1.0:
        raise click.BadParameter(f"{value!r} is outside [0, 1] (0%-100%)")
    return ratio


if TYPE_CHECKING:
    _RatioBase = click.ParamType[float]
else:  # click before 8.2 has no generic ParamType
    _RatioBase = click.ParamType


class _Ratio(_RatioBase):
    name = "RATIO"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return _parse_ratio(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


RATIO = _Ratio()


# -- alias -----------------------------------------------------------------------------


@cli.group("alias")
def alias_group() -> None:
    """Show or set the active version of a model."""


@alias_group.command("show")
@click.argument("name")
@json_option
@pass_state
def alias_show(app: AppState, name: str, as_json: bool) -> None:
    """Show a model's aliases: active, canary, ratio, generation."""
    state = _checked_aliases(app.registry, name)
    if as_json:
        emit_json({"model": name, "aliases": _state_json(state)})
        return
    _print_state(app, name, state)


@alias_group.command("set")
@click.argument("name")
@click.argument("version")
@_reason_option
@json_option
@pass_state
def alias_set(app: AppState, name: str, version: str, reason: str | None, as_json: bool) -> None:
    """Point active at VERSION (a blue-green flip; any canary is dropped)."""
    state = app.registry.set_active(name, version, reason=reason)
    _report_change(app, name, "set_active", state, as_json)


# -- canary ----------------------------------------------------------------------------


@cli.group("canary")
def canary_group() -> None:
    """Start, resize or abort a canary."""


@canary_group.command("start")
@click.argument("name")
@click.argument("version")
@click.option("--ratio", "ratio", type=RATIO, required=True, help="The canary's share: 0.05 or 5%.")
@click.option(
    "--allow-major",
    is_flag=True,
    help="Allow a canary of another MAJOR version than active (the server must handle both).",
)
@_reason_option
@json_option
@pass_state
def canary_start(
    app: AppState,
    name: str,
    version: str,
    ratio: float,
    allow_major: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Send a share of traffic to VERSION beside the active version."""
    state = app.registry.start_canary(name, version, ratio, reason=reason, allow_major=allow_major)
    _report_change(app, name, "start_canary", state, as_json)


@canary_group.command("ratio")
@click.argument("name")
@click.argument("ratio", type=RATIO)
@_reason_option
@json_option
@pass_state
def canary_ratio(app: AppState, name: str, ratio: float, reason: str | None, as_json: bool) -> None:
    """Change the canary's share of traffic (0.25 or 25%)."""
    state = app.registry.set_ratio(name, ratio, reason=reason)
    _report_change(app, name, "set_ratio", state, as_json)


@canary_group.command("abort")
@click.argument("name")
@_reason_option
@json_option
@pass_state
def canary_abort(app: AppState, name: str, reason: str | None, as_json: bool) -> None:
    """Stop the canary; all traffic returns to the active version."""
    state = app.registry.abort_canary(name, reason=reason)
    _report_change(app, name, "abort_canary", state, as_json)


# -- promote / rollback ----------------------------------------------------------------


@cli.command("promote")
@click.argument("name")
@_reason_option
@json_option
@pass_state
def promote_command(app: AppState, name: str, reason: str | None, as_json: bool) -> None:
    """Make the canary the active version."""
    state = app.registry.promote(name, reason=reason)
    _report_change(app, name, "promote", state, as_json)


@cli.command("rollback")
@click.argument("name")
@_reason_option
@json_option
@pass_state
def rollback_command(app: AppState, name: str, reason: str | None, as_json: bool) -> None:
    """Return active to the version that was active before it (drops any canary)."""
    state = app.registry.rollback(name, reason=reason)
    _report_change(app, name, "rollback", state, as_json)


# -- history / served-at ---------------------------------------------------------------


def _record_json(record: HistoryRecord) -> dict[str, Any]:
    data: dict[str, Any] = record.model_dump(mode="json")
    return data


@cli.command("history")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N changes.")
@json_option
@pass_state
def history_command(app: AppState, name: str, limit: int | None, as_json: bool) -> None:
    """Every alias change of a model, oldest first: who, when, why, what."""
    records = app.registry.history(name, limit=limit)
    if not records:
        _require_model(app.registry, name)
    if as_json:
        emit_json({"model": name, "history": [_record_json(r) for r in records]})
        return
    if not records:
        app.console.print(f"{name}: no alias changes recorded")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("gen", "when", "who", "action", "active", "canary", "ratio"):
        table.add_column(column, no_wrap=column != "who")
    # The reason gets the room that is left, but never less than a readable width.
    table.add_column("reason", min_width=30, overflow="fold")
    for record in records:
        state = record.state
        summary, details = split_reason(record.reason, record.details)
        shown = Text(summary)
        for key, value in details:
            shown.append(f"\n  {key}: {value}", style="dim")
        table.add_row(
            str(record.generation),
            format_time(record.when),
            record.who,
            record.action,
            state.active or "-",
            state.canary or "-",
            f"{state.ratio:.4g}" if state.canary else "-",
            shown,
        )
    app.console.print(table)


@cli.command("served-at")
@click.argument("name")
@click.argument("time", metavar="TIME")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds a server may keep serving a replaced state (poll interval + load time).",
)
@json_option
@pass_state
def served_at_command(app: AppState, name: str, time: str, grace: float, as_json: bool) -> None:
    """Which versions could have served a prediction at TIME.

    TIME is ISO 8601 (2026-05-04T10:15:00Z; without an offset it is UTC) or 'now'.
    """
    try:
        when = parse_instant(time)
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc), param_hint="'TIME'") from None
    _require_model(app.registry, name)
    served = app.registry.served_at(name, when, grace=timedelta(seconds=grace))
    if as_json:
        emit_json(
            {
                "model": name,
                "time": when.isoformat(),
                "grace_seconds": grace,
                "versions": [s.model_dump(mode="json") for s in served],
            }
        )
        return
    if not served:
        app.console.print(f"{name}: no version was serving at {when.isoformat()}")
        return
    for item in served:
        app.console.print(
            f"{item.version}  {item.role}  share {item.ratio:.4g}  generation {item.generation}"
        )
