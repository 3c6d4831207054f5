"""The campaign: its configuration and presets (`config`, `presets/`), the round loop (`loop`), its
records on disk (`runlog`), their checksums (`integrity`), what a resume makes again (`repair`)
and `verify-run` (`audit`).

`Campaign`, `CampaignConfig` and `load_campaign_config` are importable from here; the loop (torch)
is imported only when `Campaign` is first used, so loading a config stays light.
"""

_LAZY = {
    "Campaign": "train.campaign.loop",
    "CampaignConfig": "train.campaign.config",
    "load_campaign_config": "train.campaign.config",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'train.campaign' has no attribute {name!r}")


__all__ = list(_LAZY)
