"""``compare`` and ``diff``: versions side by side and two versions diffed."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelshelf import Registry
from modelshelf._versions import Comparison
from modelshelf._versions._compare import compare_versions, diff_versions, flatten
from tests.support.views import MODEL, push_versions


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg", cache_dir=tmp_path / "cache", user="alice@test")


def _compare(reg: Registry, versions: list[str]) -> Comparison:
    return reg.compare(MODEL, versions)


def test_performance_rows_show_values_and_change_against_the_previous(reg: Registry) -> None:
    versions = push_versions(reg, 3)
    comparison = _compare(reg, versions)
    accuracy = comparison.row("performance", "accuracy")
    assert [c.value for c in accuracy.cells] == [0.90, 0.91, 0.92]
    assert accuracy.cells[0].delta is None, "the first column has nothing to compare with"
    assert [round(c.delta or 0, 6) for c in accuracy.cells[1:]] == [0.01, 0.01]
    latency = comparison.row("performance", "latency_ms")
    assert [c.delta for c in latency.cells] == [None, 1.0, 1.0]
    assert comparison.row("hyperparameters", "n_estimators").cells[2].value == 120
    assert comparison.row("training_data", "samples").cells[1].value == 1001
    assert [c.version for c in comparison.versions] == versions
    # Performance fields no card sets are not rows full of dashes.
    with pytest.raises(KeyError):
        comparison.row("performance", "f1_score")


def test_diff_only_keeps_exactly_the_rows_that_differ(reg: Registry) -> None:
    versions = push_versions(reg, 3)
    comparison = _compare(reg, versions)
    same = comparison.row("hyperparameters", "max_depth")
    assert not same.differs
    only = comparison.diff_only()
    fields = {(r.section, r.field) for r in only.rows}
    assert ("hyperparameters", "max_depth") not in fields
    assert ("card", "framework") not in fields
    assert {("performance", "accuracy"), ("hyperparameters", "n_estimators")} <= fields
    assert all(r.differs for r in only.rows)
    assert len(only.rows) < len(comparison.rows)


def test_schema_rows_name_added_and_removed_features(reg: Registry) -> None:
    reg.push(MODEL, {"w": 1}, version="1.0.0", card={"input_schema": {"features": ["a", "b"]}})
    reg.push(MODEL, {"w": 2}, version="2.0.0", card={"input_schema": {"features": ["b", "c"]}})
    row = _compare(reg, ["1.0.0", "2.0.0"]).row("input_schema", "features")
    assert row.cells[1].added == ["c"]
    assert row.cells[1].removed == ["a"]
    assert row.cells[1].changed and row.differs


def test_a_field_one_card_lacks_is_shown_missing_not_equal(reg: Registry) -> None:
    reg.push(MODEL, {"w": 1}, version="1.0.0", card={"performance": {"accuracy": 0.9}})
    reg.push(MODEL, {"w": 2}, version="1.1.0", card={"performance": {"recall": 0.8}})
    comparison = _compare(reg, ["1.0.0", "1.1.0"])
    accuracy = comparison.row("performance", "accuracy")
    assert [c.present for c in accuracy.cells] == [True, False]
    assert accuracy.differs and accuracy.cells[1].delta is None


def test_alias_rows_say_which_versions_were_ever_active_or_canary(reg: Registry) -> None:
    versions = push_versions(reg, 4)
    reg.set_active(MODEL, "1.0.0", reason="first")
    reg.start_canary(MODEL, "1.1.0", 0.1)
    reg.promote(MODEL)
    reg.start_canary(MODEL, "1.2.0", 0.1)
    comparison = _compare(reg, versions)
    by_version = {c.version: c for c in comparison.versions}
    assert by_version["1.0.0"].ever_active and not by_version["1.0.0"].ever_canary
    assert by_version["1.1.0"].ever_active and by_version["1.1.0"].ever_canary
    assert by_version["1.2.0"].ever_canary and by_version["1.2.0"].roles == ["canary"]
    assert by_version["1.1.0"].roles == ["active"]
    assert not by_version["1.3.0"].ever_active and not by_version["1.3.0"].ever_canary
    assert [c.value for c in comparison.row("aliases", "now").cells] == [
        "-",
        "active",
        "canary",
        "-",
    ]


def test_compare_refuses_versions_of_two_models(reg: Registry) -> None:
    push_versions(reg, 1)
    push_versions(reg, 1, name="other")
    with pytest.raises(ValueError, match="one model"):
        compare_versions([reg.get(f"{MODEL}:1.0.0"), reg.get("other:1.0.0")])


def test_diff_lists_card_changes_and_files_by_path(reg: Registry, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
    (one / "model.bin").write_bytes(b"old weights")
    (one / "vocab.txt").write_text("a b c")
    (one / "gone.txt").write_text("bye")
    (two / "model.bin").write_bytes(b"new weights!")
    (two / "vocab.txt").write_text("a b c")
    (two / "new.txt").write_text("hello")
    reg.push(MODEL, one, version="1.0.0", card={"performance": {"accuracy": 0.9}})
    reg.push(MODEL, two, version="1.1.0", card={"performance": {"accuracy": 0.95}})
    diff = diff_versions(reg.get(f"{MODEL}:1.0.0"), reg.get(f"{MODEL}:1.1.0"))
    assert {f.path: f.change for f in diff.files} == {
        "gone.txt": "removed",
        "model.bin": "modified",
        "new.txt": "added",
    }
    assert diff.files_unchanged == 1
    modified = next(f for f in diff.files if f.path == "model.bin")
    assert (modified.old_size, modified.new_size) == (11, 12)
    accuracy = next(c for c in diff.card if c.field == "accuracy")
    assert (accuracy.old, accuracy.new) == (0.9, 0.95)
    assert accuracy.delta == pytest.approx(0.05)
    assert not diff.identical


def test_a_version_diffed_with_itself_is_identical(reg: Registry) -> None:
    push_versions(reg, 1)
    same = reg.get(f"{MODEL}:1.0.0")
    assert diff_versions(same, same).identical


def test_flatten_keeps_empty_mappings_and_lists_as_leaves() -> None:
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1, {"x": 2}]}) == {
        "a.b": 1,
        "a.c": {},
        "d": [1, {"x": 2}],
    }
