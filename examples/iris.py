"""The classic model-card walk-through on iris: train, push with a card, retrain, bump, load.

Models are pushed in the skops format, which loads without pickle: ``load`` gets the list of
types this script trusts (the forest's tree storage), never from the file itself. A
registry whose trust policy forbids pickle loads them all the same.

Run it from anywhere::

    python examples/iris.py

It uses the default registry: ``$MODELSHELF_REGISTRY`` if set, else the folder
``./.modelshelf``. Afterwards try ``modelshelf list iris`` and ``modelshelf show iris``.

Re-running is safe. Versions are immutable, and the first model's card carries a freshly
measured latency, so a second run cannot push a *different* 1.0.0: it gets
``VersionExistsError``, keeps the 1.0.0 already in the registry and says so. The retrained
model is pushed with ``bump="minor"``, which always takes the next free MINOR version, so
every run adds one (1.1.0, then 1.2.0, ...).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.model_selection import train_test_split

from modelshelf import ModelVersion, Registry, VersionExistsError

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = ["setosa", "versicolor", "virginica"]
# Reviewed and trusted by this script: the node arrays of the forest's decision trees. skops
# loads every other type only if it is on its own list of safe types.
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Iris split 80/20, stratified, labels as species names."""
    iris = load_iris()
    labels = np.asarray(SPECIES)[iris.target]
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, labels, test_size=0.2, random_state=42, stratify=labels
    )
    return x_train, x_test, y_train, y_test


def latency_ms(model: RandomForestClassifier, sample: np.ndarray, runs: int = 50) -> float:
    """Median wall time of one single-row prediction, in milliseconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.predict(sample)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def train(
    n_estimators: int, max_depth: int | None
) -> tuple[RandomForestClassifier, dict[str, Any]]:
    """Fit a random forest and write its model card."""
    x_train, x_test, y_train, y_test = load_data()
    params = {"n_estimators": n_estimators, "max_depth": max_depth, "random_state": 42}
    model = RandomForestClassifier(**params).fit(x_train, y_train)
    predicted = model.predict(x_test)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_test, predicted, average="macro", zero_division=0
    )
    card = {
        "description": "Predicts the iris species from four flower measurements.",
        "author": "data-science team",
        "framework": f"sklearn {sklearn.__version__}",
        "algorithm": "RandomForestClassifier",
        "loader": "skops",
        "hyperparameters": params,
        "training_data": {
            "source": "sklearn.datasets.load_iris (Fisher, 1936)",
            "samples": len(x_train),
            "features": FEATURES,
            "date_collected": "1936",
        },
        "performance": {
            "accuracy": round(float(accuracy_score(y_test, predicted)), 4),
            "precision": round(float(precision), 4),
            "recall": round(float(recall), 4),
            "f1_score": round(float(f1), 4),
            "latency_ms": latency_ms(model, x_test[:1]),
        },
        # The same schemas as the README's Python API snippet, which pushes the next version.
        "input_schema": {"features": FEATURES},
        "output_schema": {"type": "string", "enum": SPECIES},
        "limitations": [
            "Trained on 120 flowers of three species; other species are misclassified.",
            "Measurements must be in centimetres.",
        ],
    }
    return model, card


def push_skops(
    registry: Registry, model: RandomForestClassifier, card: dict[str, Any], **options: Any
) -> ModelVersion:
    """Push ``model`` as one ``model.skops`` file with its card."""
    with tempfile.TemporaryDirectory(prefix="iris-") as tmp:
        path = Path(tmp) / "model.skops"
        sio.dump(model, path)
        return registry.push("iris", path, card=card, **options)


def main() -> None:
    registry = Registry()
    print(f"registry: {registry.uri}")

    model, card = train(n_estimators=100, max_depth=None)
    try:
        first = push_skops(registry, model, card, version="1.0.0")
        print(f"pushed {first.ref}: accuracy {card['performance']['accuracy']}")
    except VersionExistsError:
        first = registry.get("iris:1.0.0")
        print(f"kept {first.ref} from an earlier run (versions are immutable)")

    model, card = train(n_estimators=200, max_depth=4)
    second = push_skops(registry, model, card, bump="minor")
    print(f"pushed {second.ref}: accuracy {card['performance']['accuracy']}")

    print("versions of iris:")
    for version in registry.versions("iris"):
        manifest = registry.get(f"iris:{version}")
        performance = manifest.card.performance
        accuracy = performance.accuracy if performance else None
        print(
            f"  {version:>8}  {manifest.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{manifest.card.hyperparameters.get('n_estimators')} trees  accuracy {accuracy}"
        )

    latest, latest_card = registry.load("iris", trusted_types=TRUSTED_TYPES)
    sample = [[5.1, 3.5, 1.4, 0.2]]
    print(
        f"iris:{latest_card.version} predicts {str(latest.predict(sample)[0])!r} "
        f"for {dict(zip(FEATURES, sample[0], strict=True))}"
    )


if __name__ == "__main__":
    main()
