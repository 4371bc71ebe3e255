"""Immutable versions: manifests, push, fetch, the local cache and retention.

Everything here takes a :class:`~modelshelf._stores.Store`, never a ``Registry``; the facade
composes it (docs/design.md, "Layers").
"""

from __future__ import annotations

from ._blobs import BlobCheck, collected_versions, missing_blobs
from ._cache import BlobCache, default_cache_dir
from ._catalog import ModelSummary, model_summaries
from ._compare import Comparison, VersionDiff, compare_versions, diff_versions
from ._fetch import Fetcher, joblib_entry
from ._gc import GcPlan, parse_age, plan_gc, run_gc
from ._head import Head, newest_versions, read_head
from ._manifests import list_versions, read_manifest, read_manifest_json
from ._push import Pusher
from ._sources import JOBLIB_NAME, SourceFile, collect_source

__all__ = [
    "JOBLIB_NAME",
    "BlobCache",
    "Comparison",
    "BlobCheck",
    "Fetcher",
    "GcPlan",
    "Head",
    "ModelSummary",
    "Pusher",
    "SourceFile",
    "VersionDiff",
    "collect_source",
    "compare_versions",
    "collected_versions",
    "default_cache_dir",
    "diff_versions",
    "joblib_entry",
    "list_versions",
    "model_summaries",
    "missing_blobs",
    "newest_versions",
    "parse_age",
    "plan_gc",
    "read_head",
    "read_manifest",
    "read_manifest_json",
    "run_gc",
]
