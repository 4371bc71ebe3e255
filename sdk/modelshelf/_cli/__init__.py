"""The ``modelshelf`` command line (see ``_app.py`` for how to add commands)."""

from __future__ import annotations

from collections.abc import Sequence

# Each module registers its commands on ``cli`` when imported; add new modules here.
from . import _aliases, _ops, _promoter, _trust, _versions, _views  # noqa: F401
from ._app import cli

__all__ = ["cli", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; exits with the error's exit code on failure."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="modelshelf")
