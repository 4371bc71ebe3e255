"""examples/serve.py predicts from FastAPI's thread pool without scikit-learn's warning race.

scikit-learn's parallel helpers rebuild the process-wide ``warnings.filters`` inside
``warnings.catch_warnings()`` for every tree of a forest; two threads doing so at once leave
the filters corrupted and every later prediction warns. A tiny thread switch interval makes
the interleaving that a loaded server hits over minutes happen within a second.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

REPO = Path(__file__).resolve().parents[2]
THREADS = 4
SECONDS = 1.0


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("serve_example", REPO / "examples" / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fast_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def test_concurrent_predictions_leave_the_warning_filters_alone(fast_switching: None) -> None:
    example = load_example()
    data = load_iris()
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(data.data, data.target)
    row = [[5.1, 3.5, 1.4, 0.2]]
    shown: list[str] = []
    answers: list[Any] = []
    filters_before = list(warnings.filters)
    original_show = warnings.showwarning

    def record(message: Any, *args: Any, **kwargs: Any) -> None:
        shown.append(str(message)[:120])

    warnings.showwarning = record
    try:
        deadline = time.monotonic() + SECONDS

        def worker() -> None:
            while time.monotonic() < deadline:
                answers.append(example._classify(model, row))

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        filters_after = list(warnings.filters)
    finally:
        warnings.showwarning = original_show
        warnings.filters[:] = filters_before  # repair what a failing run corrupted
        warnings._filters_mutated()  # type: ignore[attr-defined]
    assert len(answers) > THREADS, f"only {len(answers)} predictions in {SECONDS} s"
    assert not shown, (
        f"{len(shown)} warnings from {THREADS} threads predicting at once, e.g. {shown[0]!r}"
    )
    assert filters_after == filters_before, (
        f"concurrent predictions corrupted the process-wide warning filters: "
        f"{len(filters_before)} before, {len(filters_after)} after"
    )
    label, probabilities, classes = answers[0]
    assert classes == [0, 1, 2] and label == 0 and len(probabilities) == 3, answers[0]
