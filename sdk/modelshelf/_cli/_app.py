"""The ``modelshelf`` command group and the helpers every command module shares.

Adding commands
---------------
Commands live in sibling modules, one per topic (``_versions.py`` for push/list/show/pull/
verify/card; later ``_aliases.py``, ``_promoter.py``, ``_ops.py``). A module registers its
commands on the one group defined here and is imported by ``_cli/__init__.py``::

    # _cli/_aliases.py
    from ._app import AppState, cli, emit_json, json_option, pass_state

    @cli.command()
    @click.argument("ref")
    @json_option
    @pass_state
    def promote(state: AppState, ref: str, as_json: bool) -> None:
        \"\"\"One line that ``modelshelf --help`` shows.\"\"\"
        version = state.registry.get(ref)        # the Registry, opened on first use
        if as_json:
            emit_json({...})                     # stable, sorted keys, on stdout
            return
        state.console.print(...)                 # human output on stdout

    # _cli/__init__.py: add ``from . import _aliases`` next to the other imports.

Rules every command follows:

- **Errors**: raise the :mod:`modelshelf._errors` class that fits; never print and exit by
  hand. The group turns a ``ModelshelfError`` into one ``error: ...`` line on stderr and exits
  with the class's ``exit_code`` (a traceback only with ``--debug``). Anything else exits 1.
  A new error class needs a new, distinct exit code and a row in the README's table.
- **Reading commands take** ``@json_option`` and, with ``--json``, print exactly one JSON
  document through :func:`emit_json` (keys sorted; add keys, never rename or remove them).
- **Transfers** wrap the work in :func:`transfer_progress`, which hands back a byte-count
  callback for the registry (or ``None`` when stdout or stderr is not a terminal).
- **The registry** comes from ``state.registry``: ``--registry``, else ``MODELSHELF_REGISTRY``,
  else ``./.modelshelf``, opened lazily so commands that need no store never create one.
- **User data is printed literally.** Every console made here (:func:`make_console`) has rich
  markup and emoji codes turned off, so a card field such as ``[team]``, a file named
  ``weights[v2].joblib`` or a user ``ci[/bot]`` prints as it is. Styling is given as ``style=``
  or :class:`rich.text.Text` spans, never as markup in a string.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .. import __version__
from .._errors import ModelshelfError
from .._registry import Registry

__all__ = [
    "AppState",
    "ModelshelfGroup",
    "cli",
    "emit_json",
    "format_time",
    "human_size",
    "json_option",
    "make_console",
    "pass_state",
    "plural",
    "transfer_columns",
    "transfer_progress",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppState:
    """What the global options resolved to, shared by every command of one invocation."""

    registry_uri: str | None = None
    debug: bool = False
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def registry(self) -> Registry:
        """The registry, opened on first use."""
        if self._registry is None:
            self._registry = Registry(self.registry_uri)
        return self._registry

    @property
    def console(self) -> Console:
        """Human output on stdout (rich decides colour and width from the terminal)."""
        # Made per call so a redirected sys.stdout (tests, pipes) is honoured.
        return make_console()


_PIPE_WIDTH = 10_000
"""Columns when stdout is no terminal: tables keep their natural width, nothing is cut."""


def make_console(*, stderr: bool = False) -> Console:
    """A console that prints user data literally: no markup, no emoji codes, no highlighting.

    On a terminal rich fits the output to its width; in a pipe or a file nothing is wrapped
    or cut (rich would otherwise assume 80 columns and squeeze or truncate table cells).
    """
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(
        file=stream,
        markup=False,
        emoji=False,
        highlight=False,
        soft_wrap=not tty,
        width=None if tty else _PIPE_WIDTH,
    )


pass_state = click.make_pass_decorator(AppState)
"""Decorator passing the invocation's :class:`AppState` as the first argument."""


def json_option(func: F) -> F:
    """Add ``--json`` (passed as ``as_json``) to a reading command."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one machine-readable JSON document on stdout instead of text.",
    )(func)


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON with sorted keys: the stable output of ``--json``."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str))


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 file``, ``2 files``; ``words`` for an irregular plural."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def human_size(size: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_time(when: datetime) -> str:
    """A timestamp to the second, in UTC, for tables."""
    return when.strftime("%Y-%m-%d %H:%M:%SZ")


def _interactive() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()


@contextlib.contextmanager
def transfer_progress(
    description: str, total: int | None
) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr while a transfer runs.

    Yields:
        A callback taking byte counts (safe to call from worker threads), or ``None`` when
        stdout or stderr is not a terminal, so scripts and logs get no control characters.
    """
    if not _interactive():
        yield None
        return
    with Progress(*transfer_columns(), console=make_console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def transfer_columns() -> tuple[ProgressColumn, ...]:
    """The progress bar's columns: bytes done and speed in the same binary units (MiB, MiB/s)."""
    return (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        _BinarySpeedColumn(),
        TimeRemainingColumn(),
    )


class _BinarySpeedColumn(ProgressColumn):
    """Transfer speed in the same binary units as the byte counts beside it (MiB/s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("?", style="progress.data.speed")
        return Text(f"{human_size(int(speed))}/s", style="progress.data.speed")


class ModelshelfGroup(click.Group):
    """A click group that maps modelshelf errors to one stderr line and their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except ModelshelfError as exc:
            _report(ctx, exc, exc.exit_code, str(exc))
        except Exception as exc:  # anything unexpected still gets one line, not a traceback
            message = str(exc) or type(exc).__name__
            _report(ctx, exc, 1, f"{type(exc).__name__}: {message}")


def _report(ctx: click.Context, exc: BaseException, code: int, message: str) -> None:
    state = ctx.find_object(AppState)
    if state is not None and state.debug:
        traceback.print_exception(exc, file=sys.stderr)
    one_line = " ".join(message.split())
    click.echo(f"error: {one_line}", err=True)
    ctx.exit(code)


@click.group(cls=ModelshelfGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--registry",
    "registry_uri",
    metavar="URI",
    help="s3://bucket/prefix, file:///path or a folder "
    "(default: $MODELSHELF_REGISTRY, else ./.modelshelf).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(__version__, prog_name="modelshelf")
@click.pass_context
def cli(ctx: click.Context, registry_uri: str | None, debug: bool) -> None:
    """modelshelf: a model registry that is nothing but a bucket."""
    ctx.obj = AppState(registry_uri=registry_uri, debug=debug)
    _say_what_was_skipped()


class _WarningLine(logging.Handler):
    """Prints each record as one ``warning: ...`` line on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {' '.join(record.getMessage().split())}", err=True)


def _say_what_was_skipped() -> None:
    # Readers of many objects skip a corrupt one and log it here (docs/design.md,
    # "Reading stored objects"); on the command line that is one warning line each.
    skipped = logging.getLogger("modelshelf.skipped")
    if not any(isinstance(h, _WarningLine) for h in skipped.handlers):
        skipped.addHandler(_WarningLine())
        skipped.propagate = False
