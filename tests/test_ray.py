"""The Ray backend on a local Ray instance this module starts: the same episodes and metrics as
the local backend, a killed worker's chunk collected again exactly once, fresh weights after an
update (whole policy, or the adapter alone under LoRA), and a clear error for a bad address."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

import envs
from agent import Policy
from train.campaign.config import load_campaign_config
from train.campaign.loop import Campaign
from train.collect.chunks import LocalCollector, make_chunks
from train.collect.store import EpisodeStore
from train.collect.workers import (
    RayCollector,
    RayConnectError,
    connect,
    egl_device_env,
    worker_env,
)
from verifiers.episode import Job

REACH = envs.resolve("reach")
# The tiny preset, smaller evaluation: every stage (demos, collect, verify, SFT, RL, DPO, eval).
TINY = ["eval.episodes_per_task=4", "eval.videos_per_task=0"]
RAY = ["collect.backend=ray", "ray.num_workers=2"]


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": worker_env()})
    yield ray
    ray.shutdown()


def _campaign(out: Path, overrides: list[str]) -> Campaign:
    return Campaign(load_campaign_config(preset="tiny", overrides=TINY + overrides), out)


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in row.items() if not k.endswith(("_per_s", "_seconds"))} for row in rows
    ]


def _same_episodes(a, b) -> None:
    assert [e.episode_id for e in a] == [e.episode_id for e in b]
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.actions, y.actions), x.episode_id
        assert np.array_equal(x.logprobs, y.logprobs, equal_nan=True), x.episode_id
        assert (x.is_success, x.instruction) == (y.is_success, y.instruction), x.episode_id


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    _campaign(out, []).run()
    return out


@pytest.mark.slow
def test_a_two_round_campaign_on_ray_equals_the_local_one(ray_instance, local_run, tmp_path):
    _campaign(tmp_path, RAY).run()
    local = EpisodeStore(local_run / "episodes").load()
    remote = EpisodeStore(tmp_path / "episodes").load()
    assert len(local) == 2 * (6 + 8 + 8)  # demos, then two rounds of rollouts, two tasks
    _same_episodes(local, remote)
    assert len(_rows(tmp_path)) == 3
    assert _rows(tmp_path) == _rows(local_run)


@pytest.mark.slow
def test_a_killed_worker_loses_no_episode_and_stores_none_twice(ray_instance, local_run, tmp_path):
    campaign = _campaign(tmp_path, RAY + ["rounds=1"])
    collector = campaign.collector()
    pids = [info["pid"] for info in collector.worker_info()]
    killed = []

    def kill_the_first_rollout_worker(w: int, chunk) -> None:
        # Killed right after its round-1 chunk was handed to it: that chunk cannot have finished.
        if chunk.round == 1 and not killed:
            os.kill(pids[w], signal.SIGKILL)
            killed.append((w, chunk.index))

    collector.on_chunk_start = kill_the_first_rollout_worker
    campaign.run()
    assert killed and collector.restarts == 1
    stored = EpisodeStore(tmp_path / "episodes").load()
    ids = [e.episode_id for e in stored]
    assert len(ids) == len(set(ids)) == 2 * (6 + 8)
    expected = [e for e in EpisodeStore(local_run / "episodes").load() if e.round <= 1]
    _same_episodes(expected, stored)
    assert _rows(tmp_path) == _rows(local_run)[:2]


@pytest.mark.slow
def test_a_killed_ray_campaign_resumes_to_the_local_result(local_run, tmp_path):
    # The driver (which started its own Ray instance) is killed mid-campaign, then resumed.
    out = tmp_path / "killed"
    cli = [sys.executable, "-m", "train.cli", "run", "--preset", "tiny", "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        cli + TINY + RAY, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 600
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        assert proc.poll() is None, "campaign ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)  # round 0 is recorded: round 1's rollouts are under way
    proc.wait()
    assert len(_rows(out)) < 3 if (out / "metrics.jsonl").exists() else True

    resumed = subprocess.run(
        cli[:4] + ["--resume", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _rows(out) == _rows(local_run)
    stored = EpisodeStore(out / "episodes").load()
    assert len({e.episode_id for e in stored}) == len(stored)  # none twice
    _same_episodes(EpisodeStore(local_run / "episodes").load(), stored)


def _observations(episodes):
    images = np.stack([e.frames[3] for e in episodes])
    states = np.stack([e.states[3] for e in episodes])
    return images, [e.instruction for e in episodes], states


def _worker_acts_like(collector, policy, obs) -> None:
    out = ray.get(collector.workers[0].acts.remote(*obs, greedy=True))
    ref = policy.act(*obs, greedy=True)
    assert np.array_equal(out.bins, ref.bins)
    np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-5)


def _perturb(params, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def test_after_an_update_the_worker_acts_with_the_new_weights(ray_instance, tmp_path):
    policy = Policy.from_preset("tiny", seed=0)
    chunks = make_chunks([Job(REACH, 300 + i) for i in range(4)], 4, 1, lambda c: 7)
    collector = RayCollector([REACH], 4, address="", num_workers=1)
    local = LocalCollector([REACH], 4)
    try:
        [(_, first)] = collector.collect(chunks, policy)
        obs = _observations(first)
        _worker_acts_like(collector, policy, obs)

        _perturb(policy.model.parameters(), seed=1)  # an update, in place
        [(_, second)] = collector.collect(chunks, policy)
        [(_, expected)] = local.collect(chunks, policy)
        _same_episodes(expected, second)
        assert any(
            not np.array_equal(a.actions, b.actions) for a, b in zip(first, second, strict=True)
        )
        _worker_acts_like(collector, policy, obs)
        full = collector.broadcasts[-1]
        assert len(collector.broadcasts) == 2 and not full["adapter_only"]

        # Unchanged weights are not sent again, even from a reloaded copy of the policy.
        policy.save_pretrained(tmp_path / "saved")
        list(collector.collect(chunks, policy))
        list(collector.collect(chunks, Policy.from_pretrained(tmp_path / "saved")))
        assert len(collector.broadcasts) == 2

        # LoRA: the new structure goes out whole once, then only the adapter.
        policy.add_lora(r=4, alpha=8)
        list(collector.collect(chunks, policy))
        assert not collector.broadcasts[-1]["adapter_only"]
        _perturb([p for n, p in policy.model.named_parameters() if "lora_" in n], seed=2)
        policy.policy_id = "round_2"  # as a campaign names each round's checkpoint
        [(_, adapted)] = collector.collect(chunks, policy)
        assert {e.policy_id for e in adapted} == {"round_2"}
        [(_, expected)] = local.collect(chunks, policy)
        _same_episodes(expected, adapted)
        _worker_acts_like(collector, policy, obs)
        last = collector.broadcasts[-1]
        assert last["adapter_only"] and last["bytes"] < full["bytes"] / 10
    finally:
        collector.close()
        local.close()


def test_an_unreachable_address_is_named_within_seconds():
    start = time.monotonic()
    with pytest.raises(RayConnectError, match="ray.address='127.0.0.1:1' is unreachable"):
        connect("127.0.0.1:1")
    assert time.monotonic() - start < 10
    with pytest.raises(RayConnectError, match="'nowhere' is not host:port"):
        connect("nowhere")


@pytest.mark.parametrize("address", ["127.0.0.1:1", "10.255.255.1:6379"])
def test_the_cli_names_an_address_with_no_ray_cluster(tmp_path, address):
    # Refused at once, or (where something answers TCP there, or packets vanish) given up on
    # by ray.init / the connect timeout: either way a bounded wait and the address named.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = ["--preset", "tiny", "--out", str(tmp_path / "run")]
    args += ["collect.backend=ray", f"ray.address={address}"]
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "train.cli", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert time.monotonic() - start < 90
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: ray.address='{address}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_backend_settings_are_named():
    with pytest.raises(ValueError, match="collect.backend='dask'"):
        load_campaign_config(preset="tiny", overrides=["collect.backend=dask"])
    with pytest.raises(ValueError, match="ray.num_workers must be >= 1, got 0"):
        load_campaign_config(preset="tiny", overrides=["ray.num_workers=0"])


def test_the_egl_device_follows_the_gpu_ray_assigned():
    # Ray remaps CUDA_VISIBLE_DEVICES (torch sees cuda:0), but EGL counts every GPU.
    assert egl_device_env(["3"]) == {"MUJOCO_EGL_DEVICE_ID": "3"}
    assert egl_device_env([]) == {}
