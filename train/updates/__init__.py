"""The updates, in one table (`UPDATES`): SFT, RL and DPO, each with its function (`sft`, `rl`,
`dpo`: imported when it runs) and the round data it learns from. Their configs (`config`) import
no torch. Shared machinery: `optim` (optimizer, schedule), `batching`, `losses`.
"""

from __future__ import annotations

from dataclasses import dataclass

from train.updates.config import OptimConfig


@dataclass(frozen=True)
class Update:
    """One kind of update: its function (imported when it runs: torch) and the part of a round's
    organized data it learns from. Its config is `OptimizeSection.<name>` of a campaign config
    (a class of `train.updates.config`)."""

    name: str
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
        Update("sft", "train.updates.sft:sft_update", "sft", "no verified success"),
        Update(
            "rl",
            "train.updates.rl:rl_update",
            "rl",
            "no group of one seed and instruction with mixed outcomes",
        ),
        Update(
            "dpo",
            "train.updates.dpo:dpo_update",
            "dpo",
            "no seed and instruction with both a success and a failure",
        ),
    )
}
"""Every update a campaign can run (`optimize.sequence`), by name."""
