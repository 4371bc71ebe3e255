"""Seeing the registry: ``compare``, ``diff``, ``status``, ``report``, ``ui`` and
``promoter decisions``.

All of them only read, except the actions a person confirms in ``ui``. ``status`` asks the
promoter for a dry run (it judges, and writes nothing).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from .._errors import InvalidInputError
from .._refs import check_name
from ._app import AppState, cli, emit_json, format_time, human_size, json_option, pass_state
from ._promoter import promoter_group

if TYPE_CHECKING:
    from modelshelf_promoter import ModelRun

    from .._registry import Registry
    from .._versions import Comparison, VersionDiff

__all__ = [
    "compare_command",
    "decisions_command",
    "diff_command",
    "report_command",
    "status_command",
    "ui_command",
]


def _text(value: Any) -> Text:
    """User data as literal text (never rich markup)."""
    from .._views._pages import format_value

    return Text(value if isinstance(value, str) else format_value(value))


def _cell_text(cell: Any) -> Text:
    from .._views._pages import format_delta, format_value

    if not cell.present:
        return Text("-", style="dim")
    text = Text(format_value(cell.value))
    if cell.delta:
        text.append(f" ({format_delta(cell.delta)})", style="dim")
    if cell.added:
        text.append(f" +{format_value(cell.added)}", style="green")
    if cell.removed:
        text.append(f" -{format_value(cell.removed)}", style="red")
    if cell.changed:
        text.stylize("bold")
    return text


def _print_comparison(app: AppState, comparison: Comparison) -> None:
    table = Table(title=Text(f"{comparison.model}: {len(comparison.versions)} version(s)"))
    table.add_column("field")
    for column in comparison.versions:
        table.add_column(Text(column.version), overflow="fold")
    for row in comparison.rows:
        label = f"{row.section}.{row.field}" if row.field else row.section
        table.add_row(Text(label), *[_cell_text(c) for c in row.cells])
    app.console.print(table)
    if not comparison.rows:
        app.console.print("no field differs")


@cli.command("compare")
@click.argument("name")
@click.argument("versions", nargs=-1, metavar="[VERSION...]")
@click.option("--last", type=click.IntRange(min=1), metavar="N", help="The newest N versions.")
@click.option("--diff-only", is_flag=True, help="Only the fields where the versions differ.")
@json_option
@pass_state
def compare_command(
    app: AppState,
    name: str,
    versions: tuple[str, ...],
    last: int | None,
    diff_only: bool,
    as_json: bool,
) -> None:
    """Versions side by side: metrics (with the change from the previous), hyperparameters,
    training data, schemas, size, who and when, and which were ever active.

    Default: every version; name some, or take the newest N with --last.
    """
    comparison = app.registry.compare(name, list(versions) or None, last=last)
    if diff_only:
        comparison = comparison.diff_only()
    if as_json:
        emit_json(comparison.to_dict())
        return
    _print_comparison(app, comparison)


def _print_diff(app: AppState, diff: VersionDiff) -> None:
    from .._views._pages import format_value

    console = app.console
    console.print(Text(f"{diff.old} -> {diff.new}"))
    if diff.identical:
        console.print("identical cards and files")
        return
    for change in diff.card:
        old = format_value(change.old) if change.old_present else "(absent)"
        new = format_value(change.new) if change.new_present else "(absent)"
        line = Text(
            f"  {change.section}.{change.field}: {old} -> {new}"
            if change.field
            else f"  {change.section}: {old} -> {new}"
        )
        if change.delta:
            line.append(f" ({change.delta:+.4g})", style="dim")
        console.print(line)
    for f in diff.files:
        if f.change == "added":
            detail = human_size(f.new_size or 0)
        elif f.change == "removed":
            detail = human_size(f.old_size or 0)
        else:
            detail = f"{human_size(f.old_size or 0)} -> {human_size(f.new_size or 0)}"
        console.print(Text(f"  file {f.change}: {f.path} ({detail})"))
    console.print(f"  {diff.files_unchanged} file(s) unchanged")


@cli.command("diff")
@click.argument("old")
@click.argument("new")
@json_option
@pass_state
def diff_command(app: AppState, old: str, new: str, as_json: bool) -> None:
    """What changed between two versions: card fields and files (OLD and NEW are references,
    e.g. iris:1.0.0 iris:1.1.0)."""
    diff = app.registry.diff(old, new)
    if as_json:
        data = diff.model_dump(mode="json")
        data["identical"] = diff.identical
        emit_json(data)
        return
    _print_diff(app, diff)


def _dry_run(registry: Registry, name: str) -> ModelRun:
    import logging

    from modelshelf_promoter import Promoter

    logging.getLogger("modelshelf.promoter").addHandler(logging.NullHandler())
    return Promoter(registry).run_model(name, dry_run=True)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.2%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


@cli.command("status")
@click.argument("name")
@json_option
@pass_state
def status_command(app: AppState, name: str, as_json: bool) -> None:
    """The canary now, read-only: per arm requests, errors, error rate and latency with the
    judge's bounds, time at the step, and what the promoter would decide and why."""
    check_name(name)
    aliases = app.registry.aliases(name)
    run = _dry_run(app.registry, name) if aliases.canary is not None else None
    if run is not None and run.status == "error":
        from .._errors import ModelshelfError

        error = ModelshelfError(f"could not judge {name}: {run.error}")
        error.exit_code = run.exit_code or 1
        raise error
    if as_json:
        emit_json(
            {
                "model": name,
                "aliases": aliases.model_dump(mode="json"),
                "promoter": None if run is None else run.model_dump(mode="json"),
            }
        )
        return
    console = app.console
    console.print(Text(f"{name}  generation {aliases.generation}"))
    console.print(Text(f"  active  {aliases.active or '-'}"))
    if run is None or run.decision is None:
        if aliases.canary is None:
            versions = app.registry.versions(name)
            console.print(f"  no canary running ({len(versions)} version(s))")
        elif run is not None:
            console.print(Text(f"  canary  {aliases.canary}: {run.reason}"))
        return
    d = run.decision
    console.print(
        Text(
            f"  canary  {aliases.canary} at ratio {d.ratio:g}, for {_minutes(d.canary_seconds)} "
            f"({_minutes(d.step_seconds)} at this step; policy needs "
            f"{_minutes(d.policy.min_step_seconds)})"
        )
    )
    table = Table(show_edge=False)
    for header in ("arm", "requests", "errors", "error rate", "p50", "p95", "p99"):
        table.add_column(header, justify="left" if header == "arm" else "right")
    for arm_name, arm in (("canary", d.canary), ("active", d.active)):
        table.add_row(
            arm_name,
            str(arm.requests),
            str(arm.errors),
            _pct(arm.error_rate),
            _ms(arm.p50_ms),
            _ms(arm.p95_ms),
            _ms(arm.p99_ms),
        )
    console.print(table)
    errors = d.errors
    console.print(
        Text(
            f"  errors: canary may reach {_pct(errors.tolerated_rate)}; e-value "
            f"{errors.e_value:.3g} (alarm at {1 / errors.alpha:.3g})"
        )
    )
    for test in (d.latency_p95, d.latency_p99):
        label = f"p{round(test.quantile * 100)}"
        line = (
            f"  {label}: canary >= {_ms(test.canary_lower)}, alarm above "
            f"{test.tolerance:g} x {_ms(test.active_upper)} (active's upper bound)"
            if test.checked
            else f"  {label}: not checked yet ({test.canary_samples} / {test.active_samples} "
            f"samples; needs {d.policy.latency_min_samples} each)"
        )
        console.print(Text(line))
    why = d.reason.removeprefix(f"{d.action}: ")  # the judge's reasons start with the action
    console.print(Text(f"the promoter would {d.action}: {why}"), style="bold")


@cli.command("report")
@click.argument("name")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML file (default NAME-report.html).",
)
@click.option("--last", type=click.IntRange(min=1), metavar="N", help="Compare the newest N.")
@pass_state
def report_command(app: AppState, name: str, output: Path | None, last: int | None) -> None:
    """One self-contained HTML page of a model: versions compared, cards, the alias timeline,
    each canary's metrics and the promoter's decisions. Opens from file://, needs no network."""
    from .._views._report import build_report

    check_name(name)
    html = build_report(app.registry, name, last=last)
    target = output or Path(f"{name}-report.html")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Replaced whole: a reader (or a browser reloading it) never sees half a report.
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(target)
    app.console.print(Text(f"wrote {target} ({human_size(len(html.encode()))})"))


@promoter_group.command("decisions")
@click.argument("name")
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    metavar="N",
    help="The newest N decisions.",
)
@json_option
@pass_state
def decisions_command(app: AppState, name: str, last: int, as_json: bool) -> None:
    """Past promoter decisions of a model, readably: when, what, the outcome, both arms' numbers
    and why."""
    from .._views._decisions import read_decisions

    views, problems = read_decisions(app.registry.store, check_name(name), last=last)
    if as_json:
        emit_json(
            {
                "model": name,
                "decisions": [
                    {
                        **v.model_dump(mode="json", exclude={"decision"}),
                        "decision": v.decision.model_dump(mode="json"),
                    }
                    for v in views
                ],
                "unreadable": problems,
            }
        )
        return
    if not views:
        app.console.print(f"{name}: no promoter decisions recorded")
    table = Table(show_edge=False)
    for header in (
        "when",
        "gen",
        "decision",
        "outcome",
        "ratio",
        "canary req/err",
        "active req/err",
        "why",
    ):
        table.add_column(header, overflow="fold")
    for v in views:
        d = v.decision
        ratio = f"{d.ratio:g}" + (f" -> {d.next_ratio:g}" if d.next_ratio is not None else "")
        table.add_row(
            format_time(v.when),
            str(v.generation),
            d.action,
            v.outcome,
            ratio,
            f"{d.canary.requests}/{d.canary.errors}",
            f"{d.active.requests}/{d.active.errors}",
            Text(d.reason),
        )
    if views:
        app.console.print(table)
    for problem in problems:
        click.echo(f"warning: unreadable decision record {problem}", err=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@cli.command("ui")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; anything but loopback exposes your credentials' powers.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.2),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How often the canary view polls the aliases.",
)
@pass_state
def ui_command(app: AppState, host: str, port: int, poll: float) -> None:
    """A local web app over the registry: models, versions, compare, cards, the alias timeline,
    a live canary view, and promote / rollback / ratio / abort with a reason and a confirmation."""
    try:
        import uvicorn
    except ImportError as exc:
        from .._errors import ConfigurationError

        raise ConfigurationError(
            "modelshelf ui needs uvicorn, part of the 'ui' extra: pip install 'modelshelf[ui]'"
        ) from exc
    from .._views._app import create_app

    registry = app.registry

    def judge(reader: Registry, name: str) -> dict[str, Any]:
        run = _dry_run(reader, name)
        if run.decision is None:
            raise InvalidInputError(run.reason)
        data: dict[str, Any] = json.loads(run.decision.model_dump_json())
        return data

    extra = set() if _is_loopback(host) else {host}
    web = create_app(registry, judge=judge, poll_seconds=poll, allowed_hosts=extra)
    shown = f"[{host}]" if ":" in host else host
    if extra:
        click.echo(
            f"warning: binding to {host}, not loopback: anyone who can reach it can change "
            f"aliases with your credentials",
            err=True,
        )
    reach = "reachable from the network" if extra else "reachable from this machine only"
    click.echo(
        f"modelshelf ui on http://{shown}:{port}/ for {registry.uri} "
        f"(bound to {host}: {reach}); Ctrl-C stops it"
    )
    uvicorn.run(web, host=host, port=port, log_level="warning")
