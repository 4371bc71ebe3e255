"""ModelServer loads through the same loader registry as Registry.load, pickle-free."""

from __future__ import annotations

from pathlib import Path

import pytest
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modelshelf import PickleNotAllowedError, Registry, TrustPolicy, UntrustedTypesError
from modelshelf.serving import ModelServer, joblib_loader

TREE = "sklearn.tree._tree.Tree"


def test_a_server_under_a_no_pickle_policy_serves_skops_with_the_callers_types(
    tmp_path: Path,
) -> None:
    x, y = load_iris(return_X_y=True)
    registry = Registry(
        tmp_path / "reg",
        cache_dir=tmp_path / "cache",
        trust_policy=TrustPolicy(allow_pickle=False),
    )
    for version, model in (
        ("1.0.0", LogisticRegression(max_iter=500).fit(x, y)),
        ("1.1.0", DecisionTreeClassifier(random_state=0).fit(x, y)),
    ):
        path = tmp_path / version / "model.skops"
        path.parent.mkdir()
        sio.dump(model, path)
        registry.push("iris", path, version=version)
    registry.push("iris", {"pickled": True}, version="1.2.0")  # a joblib version
    registry.set_active("iris", "1.0.0")

    with ModelServer(registry, "iris", poll_interval=60) as server:
        assert server.predict("predict", x[:1]).result.tolist() == [0]
        registry.start_canary("iris", "1.1.0", 0.5)
        with pytest.raises(UntrustedTypesError, match=TREE):
            server.refresh()  # the tree needs a type this server did not trust
        assert server.status().canary is None
        registry.abort_canary("iris")
        registry.set_active("iris", "1.2.0")
        with pytest.raises(PickleNotAllowedError):
            server.refresh()
        assert server.status().active == "1.0.0"

    registry.set_active("iris", "1.0.0")
    registry.start_canary("iris", "1.1.0", 0.5)
    with ModelServer(registry, "iris", poll_interval=60, trusted_types=[TREE]) as server:
        assert server.status().canary == "1.1.0"
        assert server.predict("predict", x[:1], key="k").result.tolist() == [0]
    registry.set_active("iris", "1.2.0")
    with pytest.raises(PickleNotAllowedError, match="joblib_loader unpickles"):
        ModelServer(registry, "iris", loader=joblib_loader).start()
