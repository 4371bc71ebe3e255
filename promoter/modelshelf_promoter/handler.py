"""The AWS Lambda entry point: ``modelshelf_promoter.handler.lambda_handler``.

Invoked on a schedule (an EventBridge rule, every few minutes) with an event naming the
registry and the models to judge (see :mod:`modelshelf_promoter._event`); returns a JSON
summary with one entry per model and logs one structured line per decision.

A failure on one model (a store error, an unreadable policy) is reported in that model's
entry and logged at ERROR level; the other models are still judged and the invocation
succeeds, so the schedule's retry does not repeat the decisions that did apply. A bad event
or a registry that cannot be opened raises, which Lambda reports as a failed invocation.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any

from modelshelf import ConfigurationError, InvalidEventError, Registry

from ._event import parse_event
from ._runner import Promoter
from ._time import utcnow

__all__ = ["lambda_handler"]

logger = logging.getLogger("modelshelf.promoter")


def _user(context: Any) -> str:
    if env := os.environ.get("MODELSHELF_USER"):
        return env
    function = getattr(context, "function_name", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    return f"modelshelf-promoter:{function}" if function else "modelshelf-promoter"


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Judge the canaries an event names.

    Args:
        event: ``{"registry": URI, "models": NAME | [NAMES] | "all"}``, both optional, plain
            or inside an EventBridge envelope.
        context: Lambda's context object (``function_name`` and ``aws_request_id`` are used
            when present); may be ``None``.

    Returns:
        ``{"registry", "started_at", "request_id", "event_id", "models": [ModelRun...],
        "actions": {action: count}, "errors": n}``, JSON-serializable.

    Raises:
        InvalidEventError: The event does not validate, or names no registry and
            ``MODELSHELF_REGISTRY`` is not set.
        ConfigurationError: The registry URI cannot be opened.
    """
    if logger.level == logging.NOTSET:
        # Lambda's root logger passes WARNING and above only; decisions are INFO.
        logger.setLevel(logging.INFO)
    parsed = parse_event(event)
    uri = parsed.registry_uri()
    try:
        registry = Registry(uri, user=_user(context))
    except ConfigurationError as exc:
        raise InvalidEventError(f"invalid promoter event: registry {uri!r}: {exc}") from exc
    started = utcnow()
    runs = Promoter(registry).run(parsed.models)
    actions = Counter(run.action or run.status for run in runs)
    summary: dict[str, Any] = {
        "registry": registry.uri,
        "started_at": started.isoformat(),
        "request_id": getattr(context, "aws_request_id", None),
        "event_id": event.get("id") if isinstance(event, dict) else None,
        "models": [run.model_dump(mode="json") for run in runs],
        "actions": dict(sorted(actions.items())),
        "errors": sum(1 for run in runs if run.status == "error"),
    }
    return summary
