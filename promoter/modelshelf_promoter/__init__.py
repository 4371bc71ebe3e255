"""modelshelf promoter: judge canaries from the metrics a serving fleet logged.

Run it from a schedule (:func:`modelshelf_promoter.handler.lambda_handler`), from
``modelshelf promoter run``, or in code::

    from modelshelf import Registry
    from modelshelf_promoter import Promoter

    for run in Promoter(Registry("s3://models/prod")).run(["iris"]):
        print(run.model, run.action, run.reason)
"""

from __future__ import annotations

from ._event import PromoterEvent, parse_event
from ._judge import ArmReport, Decision, judge
from ._policy import (
    ErrorMargin,
    PromotionPolicy,
    apply_settings,
    default_policy,
    policy_from_json,
    policy_key,
    policy_to_json,
)
from ._reader import CanaryCursor, PromoterState, ReadReport, read_metrics, state_key
from ._runner import (
    DecisionRecord,
    ModelRun,
    Promoter,
    decision_prefix,
    load_policy,
    models_with_canary,
    update_policy,
)

__all__ = [
    "ArmReport",
    "CanaryCursor",
    "Decision",
    "DecisionRecord",
    "ErrorMargin",
    "ModelRun",
    "Promoter",
    "PromoterEvent",
    "PromoterState",
    "PromotionPolicy",
    "ReadReport",
    "apply_settings",
    "decision_prefix",
    "default_policy",
    "judge",
    "load_policy",
    "models_with_canary",
    "parse_event",
    "policy_from_json",
    "policy_key",
    "policy_to_json",
    "read_metrics",
    "state_key",
    "update_policy",
]
