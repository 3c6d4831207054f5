"""Verifiers: turning an episode into a verdict (environment outcome, rules, learned judges), and hindsight relabelling."""

from verifiers.episode import Episode, Verdict

__all__ = ["Episode", "Verdict"]
