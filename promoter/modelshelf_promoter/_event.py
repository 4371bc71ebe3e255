"""The promoter's invocation event, validated with pydantic.

Accepted shapes (all JSON objects)::

    {}                                             every model with a canary, registry from env
    {"registry": "s3://bucket/prefix", "models": "iris"}
    {"models": ["iris", "churn"]}
    {"models": "all"}
    {"version": "0", "id": "...", "detail-type": "Scheduled Event", "source": "aws.events",
     "account": "...", "time": "...", "region": "...", "resources": ["arn:..."],
     "detail": {"models": ["iris"]}, "registry": "s3://..."}

The last is an EventBridge event: the envelope's own fields are accepted (and otherwise
ignored), and our fields may sit at the top level next to them (what the deployed rule's
input transformer produces) or inside ``detail`` (a rule or a custom event that sends them
as the event's detail). Anything else is refused with :class:`~modelshelf.InvalidEventError`
naming the problem: an unknown field (a typo must not turn into "judge every model"), a
wrong type, a model name that is not one, an empty list, or the same field given twice with
different values.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from modelshelf import InvalidEventError, InvalidInputError, check_name

__all__ = ["ENVELOPE_FIELDS", "PromoterEvent", "parse_event"]

ENVELOPE_FIELDS = frozenset(
    {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
        "replay-name",
    }
)
"""The fields of an EventBridge event envelope."""

_ENV_REGISTRY = "MODELSHELF_REGISTRY"


class PromoterEvent(BaseModel):
    """What to judge.

    Attributes:
        registry: The registry URI (``s3://bucket/prefix`` or ``file:///path``); ``None``
            means ``MODELSHELF_REGISTRY``.
        models: The model names to judge; ``None`` (omitted, or ``"all"``) means every
            model with a canary.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    registry: str | None = None
    models: tuple[str, ...] | None = None

    @field_validator("registry", mode="before")
    @classmethod
    def _registry(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a registry URI such as s3://bucket/prefix")
        value = value.strip()
        if "://" in value and not value.startswith(("s3://", "file://")):
            raise ValueError(
                f"unsupported scheme in {value!r}: use s3://bucket/prefix or file:///path"
            )
        if value.startswith("s3://") and not value[len("s3://") :].strip("/"):
            raise ValueError(f"{value!r} names no bucket")
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        if value is None or value == "all":
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ValueError('must be a model name, a list of names, or "all"')
        if not value:
            raise ValueError('is an empty list; omit it or give "all" to judge every canary')
        names = []
        for item in value:
            try:
                names.append(check_name(item))
            except InvalidInputError as exc:
                raise ValueError(str(exc)) from None
        return tuple(dict.fromkeys(names))

    def registry_uri(self) -> str:
        """The registry to use: the event's, else ``MODELSHELF_REGISTRY``.

        Raises:
            InvalidEventError: Neither is set.
        """
        if self.registry:
            return self.registry
        env = os.environ.get(_ENV_REGISTRY, "").strip()
        if env:
            return env
        raise InvalidEventError(
            f"the event names no registry and {_ENV_REGISTRY} is not set: add "
            '"registry": "s3://bucket/prefix" to the event or set the variable'
        )


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "event"
        if error["type"] == "extra_forbidden":
            known = ", ".join(sorted(PromoterEvent.model_fields))
            problems.append(f"unknown field {field!r} (the event takes {known})")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{field}: {message}")
    return "; ".join(problems)


def parse_event(event: Any) -> PromoterEvent:
    """Validate a handler event (plain or EventBridge-wrapped).

    Raises:
        InvalidEventError: The event does not validate; the message says why.
    """
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise InvalidEventError(
            f"invalid promoter event: expected a JSON object, got {type(event).__name__}"
        )
    data = dict(event)
    if "detail-type" in data or "detail" in data:
        detail = data.get("detail")
        if detail is None:
            detail = {}
        if not isinstance(detail, dict):
            raise InvalidEventError(
                "invalid promoter event: 'detail' must be a JSON object, got "
                f"{type(detail).__name__}"
            )
        resources = data.get("resources", [])
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            raise InvalidEventError("invalid promoter event: 'resources' must be a list of ARNs")
        for name in ("id", "source", "detail-type", "time", "account", "region", "version"):
            if name in data and not isinstance(data[name], str):
                raise InvalidEventError(
                    f"invalid promoter event: envelope field {name!r} must be a string"
                )
        top = {k: v for k, v in data.items() if k not in ENVELOPE_FIELDS}
        for name in top.keys() & detail.keys():
            if top[name] != detail[name]:
                raise InvalidEventError(
                    f"invalid promoter event: {name!r} is given both in the event and in "
                    f"its detail, with different values ({top[name]!r} vs {detail[name]!r})"
                )
        data = {**detail, **top}
    try:
        return PromoterEvent.model_validate(data)
    except ValidationError as exc:
        raise InvalidEventError(f"invalid promoter event: {_describe(exc)}") from exc
