"""PUBLIC: the report and the local web app over a registry (the ``ui`` extra).

``build_report(registry, name)`` returns one self-contained HTML page of a model (what
``modelshelf report`` writes); ``create_app(registry)`` is the ASGI app ``modelshelf ui``
serves. Importing this module needs no extra; calling either needs Jinja2 and
vl-convert-python (and Starlette for the app): ``pip install "modelshelf[ui]"``.
"""

from __future__ import annotations

from ._views._app import create_app
from ._views._report import build_report

__all__ = ["build_report", "create_app"]
