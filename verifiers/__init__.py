"""Verifiers: turning an episode into a verdict (environment outcome, rules, learned judges), and hindsight relabelling.

The learned verifiers (`SuccessClassifier`, `MLLMJudge`) import torch; they are loaded on first
access so that `import verifiers` stays light.
"""

from verifiers.base import Verifier
from verifiers.compose import AllOf, AnyOf, Weighted
from verifiers.environment import EnvironmentVerifier
from verifiers.episode import Episode, Verdict
from verifiers.metrics import agreement
from verifiers.relabel import relabel
from verifiers.rules import (
    ActionSaturationRule,
    ContactForceRule,
    FiniteStateRule,
    ObjectsOffTableRule,
    TimeLimitRule,
    default_rules,
)

_LAZY = {
    "SuccessClassifier": "verifiers.classifier",
    "ClassifierConfig": "verifiers.classifier",
    "MLLMJudge": "verifiers.judge",
    "JudgeConfig": "verifiers.judge",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'verifiers' has no attribute {name!r}")


__all__ = [
    "ActionSaturationRule",
    "AllOf",
    "AnyOf",
    "ClassifierConfig",
    "ContactForceRule",
    "EnvironmentVerifier",
    "Episode",
    "FiniteStateRule",
    "JudgeConfig",
    "MLLMJudge",
    "ObjectsOffTableRule",
    "SuccessClassifier",
    "TimeLimitRule",
    "Verdict",
    "Verifier",
    "Weighted",
    "agreement",
    "default_rules",
    "relabel",
]
