"""The primary verifier: the environment's own success check, `episode.is_success`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from verifiers.episode import Episode, Verdict


class EnvironmentVerifier:
    """Passes an episode iff the environment reported `is_success` at its last step.

    >>> EnvironmentVerifier().name
    'environment'
    """

    name = "environment"
    judges_outcome = True
    """Its verdict says whether the instruction was achieved (see `verifiers.base.Verifier`)."""

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]:
        verdicts = []
        for episode in episodes:
            if not isinstance(episode.is_success, (bool, np.bool_)):
                raise ValueError(
                    f"verifier 'environment': episode {episode.episode_id!r} has is_success="
                    f"{episode.is_success!r}; expected a bool"
                )
            passed = bool(episode.is_success)
            if passed:
                reason = "the environment reported success"
            elif episode.truncated:
                reason = f"no success within the time limit ({episode.length} steps)"
            else:
                reason = "the environment did not report success"
            verdicts.append(Verdict(episode.episode_id, self.name, passed, float(passed), reason))
        return verdicts
