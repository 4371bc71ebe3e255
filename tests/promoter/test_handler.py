"""The Lambda handler: event validation, EventBridge envelopes, registry from the environment."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from modelshelf import Registry
from modelshelf._errors import InvalidEventError
from modelshelf.metrics import MetricsSummary, new_sketch, summary_key, summary_to_json
from modelshelf.metrics import window_start as window_of
from modelshelf_promoter import parse_event
from modelshelf_promoter.handler import lambda_handler

ACTIVE, CANARY = "1.0.0", "1.1.0"


class Context:
    """The attributes of Lambda's context object the handler reads."""

    function_name = "modelshelf-promoter-test"
    aws_request_id = "req-0001"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """'iris' with a canary and some traffic; 'churn' without a canary."""
    reg = Registry(tmp_path / "registry", cache_dir=tmp_path / "cache", user="tester")
    for version in (ACTIVE, CANARY):
        reg.push("iris", {"weights": version}, version=version)
    reg.push("churn", {"weights": 0}, version=ACTIVE)
    reg.set_active("iris", ACTIVE)
    reg.set_active("churn", ACTIVE)
    reg.start_canary("iris", CANARY, 0.05)
    started = reg.aliases("iris").canary_started_at
    assert started is not None
    for version, count in ((ACTIVE, 300), (CANARY, 20)):
        sketch = new_sketch()
        for i in range(count):
            sketch.add(40.0 + i % 7)
        summary = MetricsSummary(
            model="iris",
            version=version,
            server_id="web-1",
            seq=0 if version == ACTIVE else 1,
            window_start=window_of(started + timedelta(seconds=1), 60),
            window_seconds=60,
            count=count,
            errors=1,
            latency=sketch,
        )
        reg.store.put(summary_key(summary), summary_to_json(summary))
    return reg


def scheduled_event(**ours: Any) -> dict[str, Any]:
    """An EventBridge scheduled event, with our fields beside the envelope's."""
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-01-01T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/modelshelf-promoter"],
        "detail": {},
        **ours,
    }


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ([], "expected a JSON object"),
        ("iris", "expected a JSON object"),
        ({"model": "iris"}, "unknown field 'model'"),
        ({"models": 5}, "models"),
        ({"models": ["iris", 7]}, "invalid model name 7"),
        ({"models": "Iris Classifier"}, "invalid model name"),
        ({"models": []}, "empty list"),
        ({"registry": 12}, "registry"),
        ({"registry": "gs://bucket/models"}, "unsupported scheme"),
        ({"registry": "s3://"}, "names no bucket"),
        (scheduled_event(detail="iris"), "'detail' must be a JSON object"),
        (scheduled_event(detail={"modles": ["iris"]}), "unknown field 'modles'"),
        (scheduled_event(models=["iris"], detail={"models": ["churn"]}), "both in the event"),
        (scheduled_event(resources="arn:x"), "'resources' must be a list"),
        (scheduled_event(surprise=True), "unknown field 'surprise'"),
    ],
)
def test_bad_events_are_refused_before_anything_runs(
    event: Any, expected: str, registry: Registry
) -> None:
    before = sorted(info.key for info in registry.store.list(""))
    if isinstance(event, dict) and "registry" not in event:
        event = {**event, "registry": registry.uri}  # so that a wrong acceptance would write
    with pytest.raises(InvalidEventError) as caught:
        lambda_handler(event, Context())
    assert expected in str(caught.value), f"unclear error for {event!r}: {caught.value}"
    assert caught.value.exit_code == 17, "InvalidEventError lost its exit code"
    after = sorted(info.key for info in registry.store.list(""))
    assert after == before, "a refused event still wrote to the registry"


def test_no_registry_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELSHELF_REGISTRY", raising=False)
    with pytest.raises(InvalidEventError, match="MODELSHELF_REGISTRY"):
        lambda_handler({"models": "iris"}, Context())


def test_scheduled_event_judges_every_canary(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelshelf.promoter")
    result = lambda_handler(scheduled_event(registry=registry.uri), Context())
    text = json.dumps(result)  # Lambda serializes what the handler returns
    assert [m["model"] for m in result["models"]] == ["iris"], (
        f"'all' should mean every model with a canary (iris, not churn): {text}"
    )
    (iris,) = result["models"]
    assert iris["action"] == "hold" and iris["canary_requests"] == 20, f"summary: {iris}"
    assert result["event_id"] == "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", f"{result}"
    assert result["request_id"] == "req-0001" and result["errors"] == 0, f"{result}"
    assert result["actions"] == {"hold": 1}, f"{result}"
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "modelshelf.promoter"]
    assert [(line["model"], line["action"]) for line in lines] == [("iris", "hold")], (
        f"expected one structured log line per decision: {lines}"
    )
    assert registry.aliases("iris").reason is None, "a hold changed the aliases"


def test_fields_inside_detail_are_accepted(registry: Registry) -> None:
    event = scheduled_event(detail={"registry": registry.uri, "models": ["iris", "churn"]})
    result = lambda_handler(event, None)
    statuses = {m["model"]: m["status"] for m in result["models"]}
    assert statuses == {"iris": "decided", "churn": "no_canary"}, f"{result}"


def test_registry_from_the_environment(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSHELF_REGISTRY", registry.uri)
    result = lambda_handler({"models": "iris"}, Context())
    assert result["registry"] == registry.uri, f"registry not taken from the env: {result}"
    assert [m["action"] for m in result["models"]] == ["hold"], f"{result}"
    history = registry.history("iris")
    assert history[-1].action == "start_canary", "the handler changed aliases on a hold"
    # The decision record names who decided: the function, not a login name.
    run = result["models"][0]
    obj = registry.store.get(run["decision_key"])
    assert obj is not None and b"modelshelf-promoter:modelshelf-promoter-test" in obj.data, (
        "the decision record does not name the Lambda function"
    )


def test_one_failing_model_does_not_stop_the_others(registry: Registry) -> None:
    result = lambda_handler({"registry": registry.uri, "models": ["ghost", "iris"]}, Context())
    by_model = {m["model"]: m for m in result["models"]}
    assert by_model["ghost"]["status"] == "error", f"{by_model['ghost']}"
    assert by_model["ghost"]["error_type"] == "ModelNotFoundError", f"{by_model['ghost']}"
    assert by_model["iris"]["status"] == "decided", f"iris was not judged: {by_model['iris']}"
    assert result["errors"] == 1, f"{result}"


def test_models_all_and_single_name_parse() -> None:
    assert parse_event({"models": "all"}).models is None, "'all' should mean every canary"
    assert parse_event(None).models is None, "an empty invocation should mean every canary"
    assert parse_event({"models": "iris"}).models == ("iris",), "one name"
    assert parse_event({"models": ["a", "b", "a"]}).models == ("a", "b"), "duplicates kept"
