"""Verifiers by name, as a campaign config lists them (`verify.verifiers`).

- `environment`: the episode's own success (the environment's verdict);
- `rules`: every rule of `verifiers.rules.default_rules`, or one rule by its name
  (`action_saturation`, `contact_force`, ...);
- `classifier:DIR`: a `SuccessClassifier` saved with `.save(DIR)`;
- `judge:DIR`: an `MLLMJudge` saved with `.save(DIR)`.

Checking a name (`check_name`) imports nothing heavy, so a config is validated without torch; the
learned verifiers are loaded (with torch) only when built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from verifiers.environment import EnvironmentVerifier
from verifiers.rules import default_rules

LEARNED = {
    "classifier": ("verifiers.classifier", "SuccessClassifier", "config.json"),
    "judge": ("verifiers.judge", "MLLMJudge", "judge.json"),
}
"""Learned verifier kinds: module, class, and the file its saved directory must hold."""


def rule_names() -> list[str]:
    return [rule.name for rule in default_rules()]


def verifier_names() -> list[str]:
    """Every form a name can take (learned ones with their directory as DIR)."""
    return ["environment", "rules", *rule_names(), *(f"{kind}:DIR" for kind in LEARNED)]


def check_name(name: str) -> None:
    """Raise ValueError naming `name` unless it names a verifier (a learned verifier's directory
    must exist and hold its saved files)."""
    if name in ("environment", "rules") or name in rule_names():
        return
    kind, sep, directory = name.partition(":")
    if sep and kind in LEARNED:
        _, cls, marker = LEARNED[kind]
        if not (Path(directory) / marker).is_file():
            raise ValueError(
                f"verifier {name!r}: {directory!r} holds no saved {cls} (no {marker}); save one "
                f"with {cls}.save(DIR)"
            )
        return
    raise ValueError(f"unknown verifier {name!r}; expected any of {verifier_names()}")


def build_verifiers(names: Sequence[str]) -> list:
    """The verifiers `names` name, in order (`rules` expands to every rule)."""
    import importlib

    rules = {rule.name: rule for rule in default_rules()}
    built = []
    for name in names:
        check_name(name)
        kind, _, directory = name.partition(":")
        if name == "environment":
            built.append(EnvironmentVerifier())
        elif name == "rules":
            built.extend(rules.values())
        elif name in rules:
            built.append(rules[name])
        else:
            module, cls, _ = LEARNED[kind]
            built.append(getattr(importlib.import_module(module), cls).load(directory))
    return built
