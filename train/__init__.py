"""Episode store, rollout collection, SFT / RL / DPO updates, evaluation, campaigns, CLI, plots."""
