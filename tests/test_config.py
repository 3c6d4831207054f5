"""Typed config loading: presets, strict keys and types, overrides, TOML round trip."""

import pytest

from train.campaign_config import CampaignConfig, load_campaign_config, preset_names
from train.config import ConfigError, apply_overrides, dump_toml, from_dict, load_toml, to_dict


def test_every_shipped_preset_loads():
    assert {"tiny", "default", "full"} <= set(preset_names())
    for name in preset_names():
        config = load_campaign_config(preset=name)
        assert isinstance(config, CampaignConfig) and config.tasks


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(
        ConfigError, match=r"unknown key 'collect\.episodes'.*valid keys: episodes_per_task"
    ):
        load_campaign_config(preset="tiny", overrides=["collect.episodes=3"])
    with pytest.raises(ConfigError, match="unknown key 'roundz'.*rounds"):
        from_dict(CampaignConfig, {"roundz": 2})


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"rounds: expected an integer, got 'three'"):
        from_dict(CampaignConfig, {"rounds": "three"})
    with pytest.raises(ConfigError, match=r"optimize\.sft\.lr: expected float"):
        load_campaign_config(preset="tiny", overrides=["optimize.sft.lr=fast"])
    with pytest.raises(ConfigError, match="expected true or false"):
        load_campaign_config(preset="tiny", overrides=["organize.relabel=1"])


def test_invalid_value_is_reported_with_its_section():
    with pytest.raises(ConfigError, match="unknown optimizer 'ppo'"):
        load_campaign_config(preset="tiny", overrides=['optimize.sequence=["sft", "ppo"]'])
    with pytest.raises(ConfigError, match=r"\[optimize\.sft\]: batch_size must be >= 1"):
        load_campaign_config(preset="tiny", overrides=["optimize.sft.batch_size=0"])
    with pytest.raises(ConfigError, match="collect.dtype='float64' is not supported"):
        load_campaign_config(preset="tiny", overrides=['collect.dtype="float64"'])


def test_unknown_preset_and_missing_file():
    with pytest.raises(ConfigError, match="unknown preset 'huge'; known: .*tiny"):
        load_campaign_config(preset="huge")
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml("/nonexistent/campaign.toml")


def test_overrides_parse_toml_values_into_nested_tables():
    data = apply_overrides(
        {}, ["rounds=4", "optimize.sft.lr=0.001", 'tasks=["reach"]', "policy.preset=tiny"]
    )
    assert data == {
        "rounds": 4,
        "optimize": {"sft": {"lr": 0.001}},
        "tasks": ["reach"],
        "policy": {"preset": "tiny"},
    }
    with pytest.raises(ConfigError, match="not of the form key=value"):
        apply_overrides({}, ["rounds"])


def test_resolved_config_round_trips_through_toml(tmp_path):
    config = load_campaign_config(
        preset="default", overrides=["rounds=5", "optimize.rl.kl_coef=0.05"]
    )
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(to_dict(config)))
    again = load_campaign_config(path)
    assert again == config
    assert again.rounds == 5 and again.optimize.rl.kl_coef == 0.05
    assert isinstance(again.optimize.sft.betas, tuple)
