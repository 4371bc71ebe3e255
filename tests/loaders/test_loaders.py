"""Loaders chosen from the manifest: skops, ONNX, safetensors, and joblib only when allowed."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelshelf import (
    FileEntry,
    ModelCard,
    ModelVersion,
    PickleNotAllowedError,
    SourceError,
    UntrustedTypesError,
)
from modelshelf._card import utcnow
from modelshelf._loaders import LoadOptions, OnnxModel, choose_loader

TREE = "sklearn.tree._tree.Tree"


class Tripwire:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (str(self.path), "w"))


def manifest_for(files: dict[str, Path], loader: str | None = None) -> ModelVersion:
    return ModelVersion(
        name="m",
        version="1.0.0",
        card=ModelCard(loader=loader),
        files=[FileEntry(path=p, size=f.stat().st_size, sha256="0" * 64) for p, f in files.items()],
        created_at=utcnow(),
        created_by="test",
    )


def load(files: dict[str, Path], options: LoadOptions, loader: str | None = None) -> Any:
    manifest = manifest_for(files, loader)
    spec = choose_loader(manifest, options)
    return spec.load(manifest, files, options)


@pytest.fixture
def forest_skops(tmp_path: Path) -> Path:
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    path = tmp_path / "model.skops"
    sio.dump(RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y), path)
    return path


def test_skops_loads_only_with_the_callers_trusted_types(forest_skops: Path) -> None:
    files = {"model.skops": forest_skops}
    with pytest.raises(UntrustedTypesError, match=TREE):
        load(files, LoadOptions())
    model = load(files, LoadOptions(trusted_types=(TREE,)))
    assert model.predict([[5.1, 3.5, 1.4, 0.2]]).tolist() == [0]


def test_onnx_becomes_a_session_with_predict(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "plus-one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    path = tmp_path / "model.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    model = load({"model.onnx": path}, LoadOptions(allow_pickle=False))
    assert isinstance(model, OnnxModel)
    assert model.predict([[1.0, 2.0]]).tolist() == [[2.0, 3.0]]


def test_safetensors_shards_become_one_dict(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"w": np.ones((2, 2), dtype=np.float32)}, tmp_path / "a.safetensors")
    save_file({"b": np.zeros(2, dtype=np.float32)}, tmp_path / "b.safetensors")
    files = {
        "a.safetensors": tmp_path / "a.safetensors",
        "b.safetensors": tmp_path / "b.safetensors",
    }
    tensors = load(files, LoadOptions(allow_pickle=False))
    assert sorted(tensors) == ["b", "w"] and tensors["w"].sum() == 4
    save_file({"w": np.zeros(1, dtype=np.float32)}, tmp_path / "b.safetensors")
    with pytest.raises(SourceError, match="'w' appears in two shards"):
        load(files, LoadOptions())


def test_pickle_is_refused_before_a_byte_is_unpickled(tmp_path: Path) -> None:
    tripwire = tmp_path / "tripwire"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Tripwire(tripwire)))
    files = {"model.pkl": path}
    with pytest.raises(PickleNotAllowedError, match="forbids pickle"):
        load(files, LoadOptions(allow_pickle=False))
    with pytest.raises(PickleNotAllowedError):
        load(files, LoadOptions(allow_pickle=False), loader="joblib")
    assert not tripwire.exists(), "the pickle ran although the policy forbids it"
    load(files, LoadOptions(allow_pickle=True))
    assert tripwire.exists(), "the tripwire does not fire: the test above proves nothing"


def test_the_card_names_the_loader_when_files_are_ambiguous(
    tmp_path: Path, forest_skops: Path
) -> None:
    pkl = tmp_path / "prep.joblib"
    pkl.write_bytes(pickle.dumps({"scaler": 1}))
    files = {"model.skops": forest_skops, "prep.joblib": pkl}
    with pytest.raises(SourceError, match="several loaders .*skops, joblib"):
        load(files, LoadOptions())
    model = load(files, LoadOptions(allow_pickle=False, trusted_types=(TREE,)), loader="skops")
    assert hasattr(model, "predict")
    with pytest.raises(SourceError, match="loader 'tensorflow'; known loaders: skops, onnx"):
        load(files, LoadOptions(), loader="tensorflow")
    with pytest.raises(SourceError, match="holds no file a loader reads"):
        load({"README.md": pkl}, LoadOptions())
