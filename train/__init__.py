"""The loop's stages beyond the environment and the policy, one package each, in loop order:

- `collect`: rollouts in a vector env (`episodes`), on Ray workers (`workers`), the episode store;
- `organize`: verified episodes into SFT sets, RL groups and DPO pairs (`datasets`, `round_data`);
- `updates`: SFT, RL and DPO, their losses, batching, optimizer and configs (`UPDATES`);
- `results`: evaluation, paired comparison, statistics, plots, diagnostics, dataset export;
- `campaign`: the round loop (`loop`), its configuration and presets, its run log;
- `cli`: the `autodidact` command line.

Verification itself is the `verifiers` package (`verifiers.registry` names the verifiers).
"""
