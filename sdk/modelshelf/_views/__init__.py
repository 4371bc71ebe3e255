"""Views of a registry: the alias timeline, canary series, decisions, the report and the UI.

Above the registry facade (docs/design.md, "Layers"); the comparison of versions itself is
pure and lives in the versions wing (``_versions/_compare.py``) so that the facade can offer
``Registry.compare`` and ``Registry.diff``.

- ``_timeline``, ``_canary`` and ``_decisions`` read a store and turn history, metrics
  objects and promoter decision records into rows for tables and charts;
- ``_charts`` builds Vega-Lite specs and renders them to SVG (``modelshelf[ui]``);
- ``_pages`` reads what a page of one model shows and holds the Jinja2 environment;
- ``_report`` assembles one self-contained HTML file; ``_app`` is the local web app.

Nothing here imports Jinja2, Starlette or vl-convert at module load.
"""
