"""Views of a registry: version comparison, the alias timeline, canary series, the report, the UI.

The modules are kept apart by what they need:

- ``_compare`` is pure: manifests and history records in, a comparison table out. It sits
  beside ``_card`` so :class:`~modelshelf.Registry` can offer ``compare`` and ``diff``.
- ``_timeline``, ``_canary`` and ``_decisions`` read a store and turn history, metrics
  objects and promoter decision records into rows for tables and charts.
- ``_charts`` builds Vega-Lite specs and renders them to SVG (``modelshelf[ui]``).
- ``_report`` assembles one self-contained HTML file; ``_app`` is the local web app.

This package imports none of its submodules, so importing ``_compare`` from the registry
does not pull the web stack in.
"""
