"""Typed config loading: presets, strict keys and types, overrides, TOML round trip."""

import subprocess
import sys

import pytest

from train.campaign.config import CampaignConfig, load_campaign_config, preset_names
from train.campaign.typed_config import (
    ConfigError,
    apply_overrides,
    dump_toml,
    from_dict,
    load_toml,
    to_dict,
)


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


def test_an_update_seed_that_would_be_ignored_is_refused():
    # A campaign seeds every update from its own `seed`; a section's seed would do nothing.
    with pytest.raises(ValueError, match=r"optimize\.sft\.seed=7 would have no effect"):
        load_campaign_config(preset="tiny", overrides=["optimize.sft.seed=7"])
    with pytest.raises(ValueError, match=r"demos\.sft\.seed=3 would have no effect"):
        load_campaign_config(preset="tiny", overrides=["demos.sft.seed=3"])
    # a run directory written by an earlier version stores `seed = 0` in every section
    assert load_campaign_config(preset="tiny", overrides=["optimize.sft.seed=0"]) == (
        load_campaign_config(preset="tiny")
    )
    config = load_campaign_config(preset="tiny", overrides=["seed=7"])
    assert (config.update_seed(0), config.update_seed(2)) == (7, 7002)
    assert (config.organize_seed(2), config.collect_seed(2, 1)) == (9, 7 * 1_000_003 + 2019)


def test_rl_takes_its_temperature_from_collection():
    with pytest.raises(
        ValueError,
        match=r"optimize\.rl\.temperature=0\.9 would have no effect: .*collect\.temperature=0\.7",
    ):
        load_campaign_config(
            preset="tiny", overrides=["collect.temperature=0.7", "optimize.rl.temperature=0.9"]
        )
    same = ["collect.temperature=0.7", "optimize.rl.temperature=0.7"]  # an earlier version's run
    assert load_campaign_config(preset="tiny", overrides=same) == load_campaign_config(
        preset="tiny", overrides=same[:1]
    )


def test_an_update_section_outside_the_sequence_is_warned_about_and_not_stored(caplog):
    from train.campaign.config import stored_dict

    with caplog.at_level("WARNING", logger="train.campaign.config"):
        config = load_campaign_config(
            preset="tiny", overrides=['optimize.sequence=["sft"]', "optimize.rl.lr=0.5"]
        )
    assert "optimize.rl is set but optimize.sequence=['sft'] does not run it" in caplog.text
    assert set(stored_dict(config)["optimize"]) == {"sequence", "sft"}
    caplog.clear()
    with caplog.at_level("WARNING", logger="train.campaign.config"):
        load_campaign_config(preset="default")
    assert caplog.text == ""


def test_a_config_loads_quickly_without_torch():
    code = (
        "import sys, time; t = time.perf_counter(); "
        "from train.campaign.config import load_campaign_config; "
        "load_campaign_config(preset='full'); "
        "print(time.perf_counter() - t, 'torch' in sys.modules, 'peft' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, torch_loaded, peft_loaded = out.stdout.split()
    assert (torch_loaded, peft_loaded) == ("False", "False")
    assert float(seconds) < 1.0


def test_learned_verifiers_can_be_named(tmp_path):
    from verifiers.classifier import SuccessClassifier
    from verifiers.registry import build_verifiers

    missing = f"classifier:{tmp_path / 'none'}"
    with pytest.raises(ValueError, match="holds no saved SuccessClassifier"):
        load_campaign_config(preset="tiny", overrides=[f'verify.verifiers=["{missing}"]'])
    SuccessClassifier().save(tmp_path / "clf")
    name = f"classifier:{tmp_path / 'clf'}"
    config = load_campaign_config(
        preset="tiny", overrides=[f'verify.verifiers=["rules", "{name}"]']
    )
    built = build_verifiers(config.verify.verifiers)
    assert isinstance(built[-1], SuccessClassifier) and len(built) > 2
    with pytest.raises(ValueError, match="unknown verifier 'oracle'"):
        load_campaign_config(preset="tiny", overrides=['verify.verifiers=["oracle"]'])


def test_the_organize_options_reach_the_round_data():
    config = load_campaign_config(
        preset="tiny",
        overrides=[
            'organize.balance="upsample"',
            "organize.max_per_task=5",
            "organize.max_pairs_per_group=2",
        ],
    )
    assert (config.organize.balance, config.organize.max_per_task) == ("upsample", 5)
    with pytest.raises(ValueError, match=r"organize\.balance: 'even' is not one of"):
        load_campaign_config(preset="tiny", overrides=['organize.balance="even"'])
    with pytest.raises(ValueError, match=r"organize\.max_pairs_per_group"):
        load_campaign_config(preset="tiny", overrides=["organize.max_pairs_per_group=0"])
    legacy = load_campaign_config(preset="tiny", overrides=["organize.balance=true"])
    assert legacy.organize.balance == "downsample"  # a run directory of an earlier version
