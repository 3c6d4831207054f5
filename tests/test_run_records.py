"""A finished campaign's records read back honestly: comparisons say what they cover, a damaged
record is named with its file and line, a resume names what it would change and rebuilds what
was lost exactly once."""

import json
import shutil

import pytest
from cli_helper import SMALL, cli, finished_tiny_run


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny campaign of one improvement round (copy it before changing it)."""
    out = tmp_path_factory.mktemp("records") / "run"
    return finished_tiny_run(out)


def _copy(finished, tmp_path, name="copy"):
    return shutil.copytree(finished, tmp_path / name)


def _evals(run, k=1):
    return [
        json.loads(line) for line in (run / "evals" / f"round_{k}.jsonl").read_text().splitlines()
    ]


def _write_evals(run, outcomes, k=1):
    text = "".join(json.dumps(o) + "\n" for o in outcomes)
    (run / "evals" / f"round_{k}.jsonl").write_text(text)


def test_compare_names_a_task_only_one_side_has_and_means_over_the_shared_ones(finished, tmp_path):
    reach_only = _copy(finished, tmp_path)
    _write_evals(reach_only, [o for o in _evals(finished) if "ReachBall" in o["task_id"]])
    proc = cli("compare", str(finished), str(reach_only))
    assert proc.returncode == 0, proc.stderr
    assert f"note: PressButton-v0: only {finished}:1 evaluated it; left out of the comparison" in (
        proc.stdout
    )
    assert "mean (shared tasks)" in proc.stdout
    assert "note: mean (shared tasks): over the 1 tasks both sides evaluated on shared seeds " in (
        proc.stdout
    )
    result = json.loads(cli("compare", str(finished), str(reach_only), "--json").stdout)
    (comparison,) = result["comparisons"]
    assert comparison["left_out"] == ["PressButton-v0"] and list(comparison["tasks"]) == [
        "ReachBall-v0"
    ]
    assert comparison["mean"] == comparison["tasks"]["ReachBall-v0"]


def test_compare_says_why_nothing_pairs_when_no_seed_overlaps(finished, tmp_path):
    shifted = _copy(finished, tmp_path)
    _write_evals(shifted, [{**o, "env_seed": o["env_seed"] + 100} for o in _evals(finished)])
    proc = cli("compare", str(finished), str(shifted))
    assert proc.returncode == 2
    assert f"{finished}:1 and {shifted}:1 share no held-out seed on any task" in proc.stderr
    assert "ReachBall-v0: no held-out seed in common (A: 10000000..10000005 (6 seeds), B: " in (
        proc.stderr
    )


def test_a_garbage_line_in_metrics_is_named_by_compare_and_resume(finished, tmp_path):
    run = _copy(finished, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines.insert(1, "{not json")
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    for args in (("compare", str(finished), str(run)), ("run", "--resume", "--out", str(run))):
        proc = cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert f"'{run}/metrics.jsonl' line 2 is not JSON: " in proc.stderr, proc.stderr
    assert "; remove line 2 of metrics.jsonl (`autodidact run --resume` then evaluates that " in (
        proc.stderr
    )


def test_a_bad_value_in_a_stored_config_names_the_file(finished, tmp_path):
    run = _copy(finished, tmp_path)
    text = (run / "config.toml").read_text().replace("rounds = 1", 'rounds = "x"')
    (run / "config.toml").write_text(text)
    proc = cli("run", "--resume", "--out", str(run))
    assert proc.returncode == 2
    assert f"error: '{run}/config.toml': rounds: expected an integer, got 'x'" in proc.stderr


def test_resume_with_a_changed_config_names_the_keys_that_differ(finished):
    proc = cli("run", "--resume", "--out", str(finished), "--preset", "tiny", *SMALL, "rounds=2",
                "eval.episodes_per_task=4")  # fmt: skip
    assert proc.returncode == 2
    assert "differs from it in eval.episodes_per_task: 6 -> 4; rounds: 1 -> 2 (stored -> given" in (
        proc.stderr
    )


def test_resume_with_overrides_alone_lays_them_over_the_stored_config(finished):
    """Issue 32 finding 6: overrides without a preset were laid over the `default` preset, so
    resume listed every key where `default` differs from the stored run (`policy.preset`, ...)."""
    proc = cli("run", "--resume", "--out", str(finished), "collect.num_envs=4")
    assert proc.returncode == 2
    assert "differs from it in collect.num_envs: " in proc.stderr, proc.stderr
    assert (
        "policy.preset" not in proc.stderr
        and ";" not in proc.stderr.split("differs")[1].split("(stored")[0]
    ), proc.stderr


def test_resume_after_metrics_are_lost_rebuilds_them_and_tensorboard_once(finished, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _copy(finished, tmp_path)
    (run / "metrics.jsonl").unlink()
    proc = cli("run", "--resume", "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    timing = ("per_s", "seconds", "time")

    def rows(r):
        return [
            {k: v for k, v in json.loads(line).items() if not any(t in k for t in timing)}
            for line in (r / "metrics.jsonl").read_text().splitlines()
        ]

    assert rows(run) == rows(finished)
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("eval/success_rate")] == [0, 1]
    assert [e.step for e in events.Scalars("train/sft_loss")] == [0, 1]


def _episodes(run):
    from train.collect.store import EpisodeStore

    return sorted(EpisodeStore(run / "episodes").load(with_frames=True), key=lambda e: e.episode_id)


def test_a_deleted_and_a_truncated_part_are_named_and_collected_again(finished, tmp_path):
    run = _copy(finished, tmp_path)
    manifest = json.loads((run / "episodes" / "manifest.json").read_text())["parts"]
    deleted, truncated = manifest[1], manifest[2]
    assert deleted["label"] == {"round": 0, "chunk": 1}
    assert truncated["label"] == {"round": 1, "chunk": 0}
    (run / "episodes" / deleted["file"]).unlink()
    with open(run / "episodes" / truncated["file"], "r+b") as handle:
        handle.truncate(1000)
    missing = f"part {deleted['file']} (round 0, chunk 1, {deleted['rows']} episodes) is missing"
    cut = (
        f"part {truncated['file']} (round 1, chunk 0, {truncated['rows']} episodes) is truncated "
        f"(1000 bytes; {truncated['bytes']} recorded)"
    )

    proc = cli("verify-run", str(run))
    assert proc.returncode == 1
    assert f"problem: episodes/: {missing}\n" in proc.stdout
    assert f"problem: episodes/: {cut}\n" in proc.stdout
    proc = cli("export", str(run), "--out", str(tmp_path / "dataset"))
    assert proc.returncode == 2 and f"fails its check: {missing}; {cut}" in proc.stderr
    assert not (tmp_path / "dataset").exists()

    proc = cli("run", "--resume", "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"store: {missing}; collected round 0 chunk 1 again ({deleted['rows']} episodes, " in (
        proc.stdout
    )
    assert f"store: {cut}; collected round 1 chunk 0 again ({truncated['rows']} episodes, " in (
        proc.stdout
    )
    assert "identical to the part as written" in proc.stdout
    assert (run / "metrics.jsonl").read_text() == (finished / "metrics.jsonl").read_text()
    repaired, reference = _episodes(run), _episodes(finished)
    assert [e.episode_id for e in repaired] == [e.episode_id for e in reference]
    for a, b in zip(repaired, reference, strict=True):
        assert (a.actions == b.actions).all() and (a.frames == b.frames).all(), a.episode_id
    again = json.loads((run / "episodes" / "manifest.json").read_text())["parts"]
    assert [p["sha256"] for p in again] == [p["sha256"] for p in manifest]
    proc = cli("verify-run", str(run))
    assert proc.returncode == 0 and proc.stdout.strip().endswith(f"{run}: sound"), proc.stdout
