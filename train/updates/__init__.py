"""The updates, in one table (`UPDATES`): SFT, RL and DPO, each a function of this module that
imports its update when it runs (`sft.sft_update`, `rl.rl_update`, `dpo.dpo_update`: torch) and
the round data it learns from. Their configs (`config`) import no torch. Shared machinery:
`optim` (optimizer, schedule), `batching`, `losses`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from train.updates.config import DPOConfig, OptimConfig, RLConfig, SFTConfig


@dataclass(frozen=True)
class RoundContext:
    """What a campaign round hands every update beside its data and config."""

    seed: int
    """Seeds the update's shuffling and dropout (`CampaignConfig.update_seed`)."""
    temperature: float
    """The collection's sampling temperature: the rollouts' log-probs were taken at it."""
    demos: tuple = ()
    """The campaign's verified successful demonstrations (frames loaded), for the updates that
    learn beside them (`optimize.rl.demo_weight`, `optimize.dpo.demo_weight`)."""


def run_sft(policy, data: list, config: SFTConfig, context: RoundContext) -> dict[str, float]:
    from train.updates.sft import sft_update

    return sft_update(policy, data, config, seed=context.seed)


def run_rl(policy, data: list, config: RLConfig, context: RoundContext) -> dict[str, float]:
    from train.updates.rl import rl_update

    return rl_update(
        policy,
        data,
        config,
        temperature=context.temperature,
        seed=context.seed,
        demos=context.demos,
    )


def run_dpo(policy, data: list, config: DPOConfig, context: RoundContext) -> dict[str, float]:
    from train.updates.dpo import dpo_update

    return dpo_update(policy, data, config, seed=context.seed, demos=context.demos)


@dataclass(frozen=True)
class Update:
    """One kind of update: its function and the part of a round's organized data it learns
    from. Its config is `OptimizeSection.<name>` of a campaign config (a class of
    `train.updates.config`)."""

    name: str
    run: Callable[[Any, list, OptimConfig, RoundContext], dict[str, float]]
    """`run(policy, data, config, context) -> metrics`; the metric keys are final
    (`train/{name}_...`)."""
    data: str
    """The `RoundData` field it learns from."""
    needs: str
    """What that data must hold; logged when a round has none."""


UPDATES = {
    update.name: update
    for update in (
        Update("sft", run_sft, "sft", "no verified success"),
        Update("rl", run_rl, "rl", "no group of one seed and instruction with mixed outcomes"),
        Update("dpo", run_dpo, "dpo", "no seed and instruction with both a success and a failure"),
    )
}
"""Every update a campaign can run (`optimize.sequence`), by name."""
