"""The promotion policy of one model, stored at ``{model}/promoter/policy.json``.

A model without a stored policy uses the defaults below. Every field is checked when the
policy is read or set; a bad one raises :class:`~modelshelf.InvalidPolicyError` naming the
field and what to write instead.

Two levels, one per direction:

* ``alpha`` bounds the probability that a canary as good as the policy tolerates is ever
  rolled back, over all the promoter's looks together. It is split between the three tests
  the judge runs: half for the error rate, a quarter for p95 latency and a quarter for p99
  latency (see :mod:`modelshelf_promoter._stats` and :mod:`modelshelf_promoter._counts`).
* ``beta`` bounds the probability that a canary *materially worse* than active in one
  respect (error rate at ``error_worse_ratio`` times active's and above ``error_floor``, or
  a p95/p99 at ``latency_worse_ratio`` times active's and above ``latency_floor_ms``) is ever
  promoted. Each respect has its own gate at level ``beta``; a canary must pass all of them,
  so no union bound is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelshelf import InvalidPolicyError, canonical_json, check_name, layout

__all__ = [
    "ErrorMargin",
    "PromotionPolicy",
    "apply_settings",
    "default_policy",
    "policy_from_json",
    "policy_key",
    "policy_to_json",
    "step_index_for",
]

_HINTS: dict[str, str] = {
    "steps": "give increasing canary shares within (0, 1], e.g. [0.05, 0.25, 0.5, 1.0]",
    "min_requests_per_arm": "give a whole number of requests >= 1, e.g. 500",
    "min_step_seconds": "give seconds >= 0, e.g. 600",
    "max_canary_seconds": "give seconds > 0, e.g. 86400 (24 h)",
    "error_margin": "give {'kind': 'relative' or 'absolute', 'value': >= 0}, e.g. relative 0.05",
    "latency_p95_ratio": "give a ratio >= 1, e.g. 1.2 (canary p95 may be 20% above active's)",
    "latency_p99_ratio": "give a ratio >= 1, e.g. 1.2",
    "latency_min_samples": "give a whole number >= 1, e.g. 200",
    "alpha": "give a probability within (0, 0.5], e.g. 0.05",
    "error_mixture_sd": "give an error-rate difference within (0, 1], e.g. 0.01",
    "beta": "give a probability within (0, 0.5], e.g. 0.05",
    "error_worse_ratio": "give a ratio above 1 + the error margin, e.g. 1.5",
    "error_floor": "give an error rate within [0, 1), e.g. 0.0005 (0.05%)",
    "catch_error_ratio": "give a ratio above 1 + the error margin, e.g. 3 (1% -> 3% errors)",
    "latency_worse_ratio": "give a ratio >= the latency tolerances, e.g. 1.5",
    "latency_floor_ms": "give milliseconds >= 0, e.g. 5 (0 disables the floor)",
    "write_report": "give true or false",
    "server_requests_factor": "give a factor >= 2, e.g. 10 (a server may report 10x the "
    "fleet's median requests per window)",
    "max_server_requests_per_second": "give requests per second > 0, or null for none",
}


class ErrorMargin(BaseModel):
    """How much worse the canary's error rate may be than active's.

    ``relative``: the canary may reach ``active_rate * (1 + value)``;
    ``absolute``: it may reach ``active_rate + value`` (``value`` is a fraction, 0.01 = 1 pp).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["relative", "absolute"] = "relative"
    value: float = Field(default=0.05, ge=0.0, allow_inf_nan=False)

    @field_validator("value")
    @classmethod
    def _bounded(cls, value: float) -> float:
        if value >= 1.0e6:
            raise ValueError("margin is too large to mean anything")
        return value


class PromotionPolicy(BaseModel):
    """Steps, minimums, tolerances, materially-worse levels and both error levels.

    Advancing needs, at once: on each arm during the current step at least
    ``min_requests_per_arm`` requests and as many as a ``catch_error_ratio`` regression
    needs to show (see :func:`~modelshelf_promoter._counts.catch_minimum`),
    ``min_step_seconds`` at the step, data from
    the canary in the last window, no latency hold and no alarm. The canary is promoted
    from the last step below 1.0 (the concurrent control is kept to the end; a final step
    of 1.0 stands for the promotion itself), and only once the promotion gate shows it is
    not materially worse. An alarm (error rate or latency) rolls back at any step. A canary
    still undecided after ``max_canary_seconds`` ends *inconclusive* (aborted).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)
    min_requests_per_arm: int = Field(default=500, ge=1)
    min_step_seconds: float = Field(default=600.0, ge=0.0, allow_inf_nan=False)
    max_canary_seconds: float = Field(default=86400.0, gt=0.0, allow_inf_nan=False)
    error_margin: ErrorMargin = Field(default_factory=ErrorMargin)
    latency_p95_ratio: float = Field(default=1.2, ge=1.0, allow_inf_nan=False)
    latency_p99_ratio: float = Field(default=1.2, ge=1.0, allow_inf_nan=False)
    latency_min_samples: int = Field(default=200, ge=1)
    alpha: float = Field(default=0.05, gt=0.0, le=0.5, allow_inf_nan=False)
    # The sd of the normal mixing distribution of the error-rate test: detection is
    # quickest for regressions of about this size (absolute error-rate difference).
    error_mixture_sd: float = Field(default=0.01, gt=0.0, le=1.0, allow_inf_nan=False)
    beta: float = Field(default=0.025, gt=0.0, le=0.5, allow_inf_nan=False)
    error_worse_ratio: float = Field(default=1.5, gt=1.0, le=1000.0, allow_inf_nan=False)
    error_floor: float = Field(default=0.0005, ge=0.0, lt=1.0, allow_inf_nan=False)
    catch_error_ratio: float = Field(default=3.0, gt=1.0, le=1000.0, allow_inf_nan=False)
    latency_worse_ratio: float = Field(default=1.5, ge=1.0, le=1000.0, allow_inf_nan=False)
    latency_floor_ms: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    # After each run that judged a canary, replace {model}/report.html with the model's
    # report (modelshelf report), so a team shares one link. Needs the ui extra.
    write_report: bool = False
    # Each server's requests per window are bounded by the fleet's (modelshelf_promoter.
    # _volume): more than this factor times the median of the other servers is left out
    # and reported; the absolute ceiling, when set, applies to every server and window.
    server_requests_factor: float = Field(default=10.0, ge=2.0, le=1.0e6, allow_inf_nan=False)
    max_server_requests_per_second: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if not steps:
            raise ValueError("needs at least one step")
        for step in steps:
            if not 0.0 < step <= 1.0:
                raise ValueError(f"step {step} is outside (0, 1]")
        for before, after in zip(steps, steps[1:], strict=False):
            if after <= before:
                raise ValueError(f"steps must increase strictly ({before} then {after})")
        return steps

    @field_validator("steps")
    @classmethod
    def _controlled(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if steps and steps[0] >= 1.0:
            raise ValueError("needs a step below 1.0, where active still serves as the control")
        return steps

    @model_validator(mode="after")
    def _levels(self) -> PromotionPolicy:
        if self.error_margin.kind == "relative":
            tolerated = 1.0 + self.error_margin.value
            for name in ("error_worse_ratio", "catch_error_ratio"):
                if getattr(self, name) <= tolerated:
                    raise ValueError(
                        f"{name} {getattr(self, name):g} must exceed the tolerated ratio "
                        f"{tolerated:g} (1 + error_margin.value); raise it, e.g. to "
                        f"{max(1.5, 1.5 * tolerated):g}"
                    )
        tolerance = max(self.latency_p95_ratio, self.latency_p99_ratio)
        if self.latency_worse_ratio < tolerance:
            raise ValueError(
                f"latency_worse_ratio {self.latency_worse_ratio:g} is below the latency "
                f"tolerance {tolerance:g}; raise it, e.g. to 1.5"
            )
        return self

    @property
    def tolerated_error_ratio(self) -> float:
        """The rate ratio the rollback test's null hypothesis allows (relative margins)."""
        return 1.0 + self.error_margin.value

    @property
    def promotion_index(self) -> int:
        """Index of the step promotion happens from: the last one below 1.0."""
        return max(i for i, step in enumerate(self.steps) if step < 1.0)

    @property
    def error_alpha(self) -> float:
        """The share of ``alpha`` spent on the error-rate test."""
        return self.alpha / 2

    @property
    def latency_alpha(self) -> float:
        """The share of ``alpha`` spent on each latency quantile (p95, p99)."""
        return self.alpha / 4


def policy_key(model: str) -> str:
    """Key of a model's stored policy."""
    return layout.policy_key(check_name(model))


def default_policy() -> PromotionPolicy:
    """The policy a model without a stored one uses."""
    return PromotionPolicy()


def _policy_error(exc: ValidationError, source: str) -> InvalidPolicyError:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        field = ".".join(loc) or "policy"
        hint = _HINTS.get(loc[0] if loc else "", "see the policy fields in the documentation")
        if error["type"] == "extra_forbidden":
            known = ", ".join(sorted(PromotionPolicy.model_fields))
            hint = f"remove it; the fields are {known}"
        problems.append(f"{field}: {str(error['msg']).removeprefix('Value error, ')} ({hint})")
    return InvalidPolicyError(f"invalid promotion policy {source}: " + "; ".join(problems))


def policy_from_json(data: bytes | str | dict[str, Any], source: str = "") -> PromotionPolicy:
    """Validate a stored (or user-given) policy.

    Raises:
        InvalidPolicyError: Not JSON, an unknown field, or a value out of range; the message
            names each bad field and what to give instead.
    """
    label = source or "policy.json"
    try:
        if isinstance(data, dict):
            return PromotionPolicy.model_validate(data)
        return PromotionPolicy.model_validate_json(data)
    except ValidationError as exc:
        raise _policy_error(exc, label) from exc


def policy_to_json(policy: PromotionPolicy) -> bytes:
    """Canonical bytes of a policy (sorted keys)."""
    return canonical_json(policy.model_dump(mode="json"))


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        if "," in text:
            return [_parse_value(part.strip()) for part in text.split(",") if part.strip()]
        return text


def apply_settings(policy: PromotionPolicy, settings: Iterable[str]) -> PromotionPolicy:
    """A copy of ``policy`` with ``FIELD=VALUE`` settings applied, validated as a whole.

    Values are JSON where they parse (``alpha=0.01``, ``steps=[0.1,0.5,1]``), comma lists
    (``steps=0.1,0.5,1``) or plain strings; nested fields use dots
    (``error_margin.kind=absolute``, ``error_margin.value=0.002``).

    Raises:
        InvalidPolicyError: A setting without ``=``, an unknown field or a bad value.
    """
    data = policy.model_dump(mode="json")
    for setting in settings:
        name, sep, raw = setting.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidPolicyError(
                f"invalid policy setting {setting!r}: write FIELD=VALUE, e.g. alpha=0.01"
            )
        target = data
        *parents, leaf = name.split(".")
        for parent in parents:
            child = target.get(parent)
            if not isinstance(child, dict):
                raise InvalidPolicyError(
                    f"invalid policy setting {setting!r}: {parent!r} has no sub-fields"
                )
            target = child
        target[leaf] = _parse_value(raw.strip())
    return policy_from_json(data, "settings")


def step_index_for(policy: PromotionPolicy, ratio: float) -> int:
    """Index of the step a canary at ``ratio`` is on: the largest step not above it.

    Returns -1 when ``ratio`` is below the first step (the next advance goes to step 0).
    """
    index = -1
    for i, step in enumerate(policy.steps):
        if step <= ratio + 1e-9:
            index = i
    return index
