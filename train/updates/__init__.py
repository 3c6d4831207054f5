"""The updates, in one table (`UPDATES`): SFT, RL and DPO, each with its config (`config`, no
torch), its function (`sft`, `rl`, `dpo`: imported when it runs) and the round data it learns
from. Shared machinery: `optim` (optimizer, schedule), `batching`, `losses`.
"""

from __future__ import annotations

from dataclasses import dataclass

from train.updates.config import DPOConfig, OptimConfig, RLConfig, SFTConfig


@dataclass(frozen=True)
class Update:
    """One kind of update: its config, its function (imported when it runs: torch), and the part
    of a round's organized data it learns from."""

    name: str
    config: type[OptimConfig]
    function: str
    """`module:function`, called as `function(policy, data, config) -> metrics`; the metric keys
    are final (`train/{name}_...`)."""
    data: str
    """The `RoundData` field it learns from."""
    needs: str
    """What that data must hold; logged when a round has none."""

    def run(self, policy, data: list, config: OptimConfig) -> dict[str, float]:
        import importlib

        module, function = self.function.split(":")
        return getattr(importlib.import_module(module), function)(policy, data, config)


UPDATES = {
    update.name: update
    for update in (
        Update("sft", SFTConfig, "train.updates.sft:sft_update", "sft", "no verified success"),
        Update(
            "rl",
            RLConfig,
            "train.updates.rl:rl_update",
            "rl",
            "no group of one seed and instruction with mixed outcomes",
        ),
        Update(
            "dpo",
            DPOConfig,
            "train.updates.dpo:dpo_update",
            "dpo",
            "no seed and instruction with both a success and a failure",
        ),
    )
}
"""Every update a campaign can run (`optimize.sequence`), by name."""
