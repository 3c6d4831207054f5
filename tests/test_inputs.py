"""Bad inputs refused where they enter, before any work, with one line naming the key or path and
what is expected: config counts, the policy source, output paths; and nothing left behind."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train.campaign.config import load_campaign_config
from train.campaign.typed_config import ConfigError
from train.cli import main

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _cli(capsys, *argv: str) -> tuple[int, str]:
    """Run the CLI in this process: its exit code and its stderr."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@contextlib.contextmanager
def read_only(directory: Path):
    """`directory` unwritable for this process: chmod for a user, a read-only bind mount for root
    (who writes through any mode bits)."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    d = str(directory)
    made = subprocess.run(["mount", "--bind", d, d], capture_output=True).returncode == 0
    if not made or subprocess.run(["mount", "-o", "remount,ro,bind", d]).returncode != 0:
        if made:
            subprocess.run(["umount", d])
        pytest.skip("running as root without mount: cannot make a read-only directory")
    try:
        yield
    finally:
        subprocess.run(["umount", d], check=True)


@pytest.mark.parametrize(
    "override, message",
    [
        ("eval.episodes_per_task=-2", "eval.episodes_per_task must be >= 1, got -2"),
        ("collect.episodes_per_task=-4", "collect.episodes_per_task must be >= 1, got -4"),
        ("collect.episodes_per_task=-1", "collect.episodes_per_task must be >= 1, got -1"),
        ("collect.group_size=0", "collect.group_size must be >= 1, got 0"),
        ("collect.num_envs=0", "collect.num_envs must be >= 1, got 0"),
        ("collect.chunk_episodes=0", "collect.chunk_episodes must be >= 1, got 0"),
        ("collect.top_k=-1", "collect.top_k must be >= 0, got -1"),
        ("demos.episodes_per_task=-3", "demos.episodes_per_task must be >= 1, got -3"),
        ("rounds=-1", "rounds must be >= 0, got -1"),
        ("image_size=0", "image_size must be a multiple of 8 in [16, 512]"),
        ("image_size=8", "image_size must be a multiple of 8 in [16, 512]"),
        ("image_size=520", "image_size must be a multiple of 8 in [16, 512]"),
        ("image_size=60", "image_size must be a multiple of 8 in [16, 512]"),
        ("image_size=96", "image_size=96 but policy preset 'tiny' reads 64x64 frames"),
        ("collect.min_mixed_groups=-1", "collect.min_mixed_groups must be >= 0, got -1"),
        ("collect.max_refills=-1", "collect.max_refills must be >= 0, got -1"),
        ("eval.videos_per_task=-1", "eval.videos_per_task must be >= 0, got -1"),
        ("optimize.sft.max_steps=0", "optimize.sft.max_steps must be >= 1, got 0"),
        ("optimize.rl.epochs=0", "[optimize.rl]: epochs must be >= 1, got 0"),
        ("organize.replay_rounds=0", "organize.replay_rounds must be -1 (all rounds) or >= 1"),
        ('collect.vectorization="fork"', "collect.vectorization='fork' is not supported"),
        ("collect.temperature=0", "collect.temperature must be > 0, got 0"),
    ],
)
def test_every_count_in_the_config_is_checked_with_its_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_campaign_config(preset="tiny", overrides=[override])
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize("key", ["rl_groups", "dpo_pairs"])
def test_hindsight_groups_need_relabelling(key):
    overrides = [f'organize.{key}="hindsight"', "organize.relabel=false"]
    with pytest.raises(ConfigError, match=f"organize.{key}='hindsight' judges .* needs organize"):
        load_campaign_config(preset="tiny", overrides=overrides)
    with pytest.raises(ConfigError, match="organize.dpo_pairs"):
        load_campaign_config(preset="tiny", overrides=['organize.dpo_pairs="scene"'])
    assert load_campaign_config(preset="tiny", overrides=overrides[:1]).organize.relabel


@pytest.mark.parametrize(
    "override, message",
    [
        ("collect.group_size=0", "collect.group_size must be >= 1, got 0"),
        ("demos.episodes_per_task=-3", "demos.episodes_per_task must be >= 1, got -3"),
        ('policy.preset="/missing/dir"', "policy.preset='/missing/dir': no such directory; "),
        ('policy.preset="huge"', "policy.preset='huge': unknown policy preset; expected"),
    ],
)
def test_a_campaign_that_fails_its_checks_leaves_nothing_behind(
    capsys, tmp_path, override, message
):
    out = tmp_path / "run"
    code, err = _cli(capsys, "run", "--preset", "tiny", "--out", str(out), override)
    assert code == 2 and f"autodidact run: error: {message}" in err, err
    assert "built-in preset (tiny, " in err or "policy" not in override
    assert not out.exists()


def test_a_model_directory_is_checked_before_any_demonstration(capsys, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    out = tmp_path / "run"
    code, err = _cli(
        capsys, "run", "--preset", "tiny", "--out", str(out), f"policy.preset='{model}'"
    )
    assert code == 2 and f"policy.preset='{model}': '{model}/config.json' not found" in err, err
    (model / "config.json").write_text("{garbage")
    code, err = _cli(
        capsys, "run", "--preset", "tiny", "--out", str(out), f"policy.preset='{model}'"
    )
    assert code == 2 and f"'{model}/config.json' does not load" in err, err
    (model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    code, err = _cli(
        capsys, "run", "--preset", "tiny", "--out", str(out), f"policy.preset='{model}'"
    )
    assert code == 2 and "unsupported model family 'bert'" in err, err
    assert not out.exists()


def test_an_output_under_a_plain_file_is_refused(capsys, tmp_path):
    plain = tmp_path / "plainfile"
    plain.write_text("not a directory")
    code, err = _cli(capsys, "run", "--preset", "tiny", "--out", str(plain / "run"))
    assert code == 2
    assert f"campaign directory '{plain}/run': '{plain}' is a file, so nothing can be made" in err
    code, err = _cli(capsys, "run", "--preset", "tiny", "--out", str(plain))
    assert code == 2 and f"campaign directory '{plain}' is a file; expected a directory" in err
    code, err = _cli(capsys, "plot", str(tmp_path), "-o", str(plain / "curve.png"))
    assert code == 2 and f"-o '{plain}/curve.png': '{plain}' is a file" in err


def test_an_output_one_cannot_write_is_refused(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "config.toml").write_text("rounds = 1\n")  # a campaign to --resume
    with read_only(locked):
        code, err = _cli(capsys, "run", "--preset", "tiny", "--out", str(locked / "run"))
        assert code == 2, err
        assert f"campaign directory '{locked}/run': cannot write in '{locked}'" in err, err
        code, err = _cli(capsys, "run", "--resume", "--out", str(locked))
        assert code == 2 and f"campaign directory '{locked}': cannot write in '{locked}'" in err
        code, err = _cli(capsys, "plot", str(tmp_path), "-o", str(locked / "curve.png"))
        assert code == 2 and f"-o '{locked}/curve.png': cannot write in '{locked}'" in err, err


def test_a_campaign_inside_another_is_refused(capsys, tmp_path):
    outer = tmp_path / "outer"
    (outer / "episodes").mkdir(parents=True)
    (outer / "config.toml").write_text("rounds = 1\n")
    code, err = _cli(capsys, "run", "--preset", "tiny", "--out", str(outer / "inner"))
    assert code == 2
    assert f"'{outer}/inner' lies inside the campaign '{outer}'; choose a directory outside" in err
    assert not (outer / "inner").exists()


def test_export_refuses_an_output_it_cannot_write(capsys, tmp_path):
    run = tmp_path / "run"
    (run / "episodes").mkdir(parents=True)
    (run / "config.toml").write_text("rounds = 1\n")
    plain = tmp_path / "plainfile"
    plain.write_text("")
    code, err = _cli(capsys, "export", str(run), "--out", str(plain / "data"))
    assert code == 2 and f"--out '{plain}/data': '{plain}' is a file" in err, err
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        code, err = _cli(capsys, "export", str(run), "--out", str(locked / "data"))
        assert code == 2 and f"--out '{locked}/data': cannot write in '{locked}'" in err, err


def test_eval_counts_are_checked(capsys, tmp_path):
    code, err = _cli(capsys, "eval", str(tmp_path), "--num-envs", "0")
    assert code == 2 and "--num-envs must be >= 1, got 0" in err
    code, err = _cli(capsys, "eval", str(tmp_path), "--chunk-episodes", "-1")
    assert code == 2 and "--chunk-episodes must be >= 1, got -1" in err


def test_a_reader_that_goes_away_ends_the_listing_quietly():
    script = f"{sys.executable} -m train.cli envs | true; echo rc=${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", script], env=ENV, capture_output=True, text=True)
    assert proc.stdout.strip() == "rc=0" and proc.stderr == "", proc.stderr
