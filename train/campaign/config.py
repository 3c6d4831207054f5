"""The campaign's typed configuration: sections as dataclasses, presets as TOML files, overrides."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from train.campaign.typed_config import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_toml,
    to_dict,
)
from train.collect.guidance import Guidance
from train.updates import UPDATES
from train.updates.config import DPOConfig, RLConfig, SFTConfig

PRESET_DIR = Path(__file__).parent / "presets"
OPTIMIZERS = tuple(UPDATES)

log = logging.getLogger(__name__)
ROLLOUT_DTYPES = ("float32", "bfloat16")
BACKENDS = ("local", "ray")
VECTORIZATIONS = ("sync", "async")


@dataclass
class PolicySection:
    preset: str = "small"
    """A built-in policy preset (`tiny`, `small`) or a local path to a pretrained VLM."""
    device: str = "cpu"
    """Torch device for the policy: `cpu`, `cuda`, or `auto` (cuda when available)."""


@dataclass
class DemoSection:
    episodes_per_task: int = 8
    """Scripted-expert demonstrations per task that seed the round-0 policy (keep it small: the
    seed policy must be weak so that the rounds have something to improve)."""
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(epochs=20, lr=1e-3))
    """How the fresh policy is fitted to the demonstrations."""
    noise: float = 0.0
    """Noise-injected demonstrations (DART): the standard deviation of the Gaussian noise added
    to the expert's executed moves (x, y, z, in action units); the recorded label stays the
    expert's clean action (`train.collect.episodes.ExpertActor`). 0: the clean expert. The
    manipulation presets use 0.1 (BENCHMARKS.md, "Manipulation, session 9")."""


@dataclass
class CollectSection:
    episodes_per_task: int = 32
    """Rollouts per task per round (= seeds per task x group_size)."""
    group_size: int = 1
    """Episodes sampled from each scene (seed); > 1 forms the groups RL and DPO learn from."""
    instructions_per_scene: int = 1
    """How many of a scene's goals its `group_size` samples are split over: 1 samples the drawn
    instruction only; n > 1 gives the drawn one and the next n - 1 goals of the scene
    `group_size / n` samples each, so the same image is seen under different instructions
    (each (seed, instruction) is an RL group and a DPO scene). A policy that goes to the same
    object whatever it is told then succeeds under one instruction and fails under the other,
    and only reading the instruction raises every group's reward."""
    num_envs: int = 16
    """Parallel environment slots (a gymnasium vector env); the policy acts on them as one batch."""
    vectorization: str = "sync"
    """`sync` (one process) or `async` (one worker process per slot)."""
    temperature: float = 1.0
    """Sampling temperature of the policy's action tokens during collection."""
    top_k: int = 0
    """Sample among the k most likely action tokens; 0 disables the cut."""
    chunk_episodes: int = 64
    """Episodes per chunk: the unit a killed campaign resumes from, the unit of work a Ray
    worker is handed, and (with evaluation cut the same way) what decides which episodes run side
    by side. With the Ray backend keep it at most episodes per round / `ray.num_workers`, or some
    workers sit idle."""
    backend: str = "local"
    """Where episodes are collected and evaluated: `local` (this process) or `ray` (rollout
    workers on a Ray cluster, see the `[ray]` section). Both give the same episodes."""
    dtype: str = "float32"
    """Weights' dtype while collecting rollouts: `float32`, or `bfloat16` (faster on a CPU with
    bf16 instructions, emulated and likely slower without; BENCHMARKS.md, "Rollout"). Training and evaluation stay in float32; rollout log-probs (RL's
    importance-ratio denominators) then carry the rounding too."""
    min_mixed_groups: int = 0
    """Dynamic sampling (as SimpleVLA-RL and RIPT-VLA do): when a task's rollouts of the round
    hold fewer than this many (seed, instruction) groups with mixed outcomes (the only groups RL
    learns from; all-success and all-failure groups carry no signal), collect a refill pass of
    fresh seeds for the tasks that are short, at most `max_refills` passes. 0: off."""
    max_refills: int = 2
    """Most refill passes per round (dynamic sampling); a round whose every rollout succeeds
    or fails stops after them."""
    guidance: Guidance = field(default_factory=Guidance)
    """How the scripted expert helps the rounds' rollouts (`train.collect.guidance`): `mode =
    "none"` (the policy alone, the default), `takeover`, `demo_start` (a reverse curriculum per
    task) or `dagger` (expert labels on the policy's states for SFT), or `demo_start+takeover` /
    `demo_start+dagger` (a demonstration leads, then the other mode); `expert_slack` > 1 lets
    the expert label and act with wider alignment tolerances (manipulation: the `guided`
    preset uses 3). Evaluation is never guided; RL and DPO learn only from the steps the policy
    acted."""


@dataclass
class RaySection:
    """Rollout workers for `collect.backend = "ray"` (ignored by the local backend)."""

    address: str = ""
    """'' starts a local Ray instance; `auto` joins the cluster this machine was added to with
    `ray start`; `host:port` joins the head at that address."""
    num_workers: int = 2
    """Rollout workers (Ray actors), each with its own vector env and copy of the policy."""
    envs_per_worker: int = 0
    """Vector-env slots per worker; 0: `collect.num_envs`. Only with the same number of slots
    does the Ray backend give exactly the local backend's episodes."""
    cpus_per_worker: float = 1.0
    """CPUs Ray reserves for each worker (its torch threads follow: Ray sets OMP_NUM_THREADS)."""
    gpus_per_worker: float = 0.0
    """GPUs Ray reserves for each worker; > 0 puts the worker's policy on its GPU and MuJoCo's
    EGL renderer on the same device."""


@dataclass
class VerifySection:
    verifiers: list[str] = field(default_factory=lambda: ["environment", "rules"])
    """Verifiers whose verdicts must all pass for an episode to count as verified: `environment`
    (the episode's own success), `rules` (every rule of `verifiers.rules.default_rules`), one
    rule by name (`action_saturation`, `contact_force`, `objects_off_table`, `finite_state`,
    `time_limit`), or a learned verifier saved in a directory: `classifier:DIR`
    (`SuccessClassifier`), `judge:DIR` (`MLLMJudge`). See `verifiers.registry`."""


@dataclass
class OrganizeSection:
    relabel: bool = True
    """Turn failed episodes whose final state achieves another instruction into successes for it."""
    dedup: bool = True
    """Drop SFT episodes that repeat another's task, seed, instruction and actions."""
    balance: Literal["none", "downsample", "upsample"] = "none"
    """Even out the tasks of the SFT set: `downsample` keeps as many episodes per task as the
    rarest task has, `upsample` repeats the rarer tasks' episodes up to the commonest's count."""
    max_per_task: int | None = None
    """Cap every task's SFT episodes at this many (after balancing); unset: no cap."""
    rl_groups: Literal["instruction", "scene", "hindsight", "trajectory"] = "instruction"
    """What an RL group shares (`train.organize.datasets.RL_GROUPINGS`): `instruction` (the
    samples of one scene under one instruction), `scene` (all samples of a scene, under the
    different instructions `collect.instructions_per_scene` gives it: a policy that goes to
    the same object whatever it is told then has successes and failures in one group) or
    `hindsight` (all samples of a scene judged against each instruction of the scene: a sample
    that reached the blue ball is a success for "blue" and a failure for "red", whatever it was
    told; `train.organize.datasets.hindsight_views`) or `trajectory` (one sample judged against
    every instruction of its scene: the update learns which instruction a trajectory fulfils,
    and a sample that achieved nothing is never pushed down)."""
    dpo_pairs: Literal["instruction", "hindsight"] = "instruction"
    """Where a DPO pair comes from (`train.organize.datasets.DPO_PAIRINGS`): a success and a
    failure told one scene's instruction, or (`hindsight`) any two samples of a scene, one that
    achieved the instruction and one that did not."""
    max_pairs_per_group: int | None = None
    """DPO pairs kept per (seed, instruction) group (a seeded subset, reusing as few episodes
    as it can); unset: every success with every failure."""
    replay_rounds: int = -1
    """Verified successes of how many past rounds (plus the demonstrations) form the SFT set; -1: all."""


@dataclass
class OptimizeSection:
    sequence: list[str] = field(default_factory=lambda: ["sft"])
    """The updates applied each round, in order: any of `sft`, `rl`, `dpo`."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)


@dataclass
class EvalSection:
    episodes_per_task: int = 30
    """Held-out seeds per task, the same every round (greedy decoding)."""
    videos_per_task: int = 1
    """MP4s of evaluation episodes written per task per round."""
    execution: str = "ensemble"
    """How a chunk policy (`tiny_grasp`) executes its greedy decisions
    (`train.collect.chunking`): `ensemble` (temporal ensembling of the moves, the newest chunk's
    fingers), `ensemble_all` (the fingers blended too), `replan` (the first step of a decision
    made at every step) or `open_loop` (whole chunks). Other policies ignore it."""


@dataclass
class CampaignConfig:
    """A whole self-improvement campaign: round 0 seeds the policy, rounds 1..`rounds` improve it."""

    tasks: list[str] = field(default_factory=lambda: ["reach", "press_button"])
    """Task short names or ids."""
    rounds: int = 3
    """Improvement rounds after the seed round."""
    seed: int = 0
    """Seeds the policy's initial weights, sampling and every update (the seeds each stage
    uses are derived from it in `update_seed`, `organize_seed` and `collect_seed`); the update
    sections' own `seed` keys must stay 0."""
    image_size: int = 64
    """Camera image side in pixels."""
    policy: PolicySection = field(default_factory=PolicySection)
    demos: DemoSection = field(default_factory=DemoSection)
    collect: CollectSection = field(default_factory=CollectSection)
    ray: RaySection = field(default_factory=RaySection)
    verify: VerifySection = field(default_factory=VerifySection)
    organize: OrganizeSection = field(default_factory=OrganizeSection)
    optimize: OptimizeSection = field(default_factory=OptimizeSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("tasks is empty; name at least one task")
        import envs

        for task in self.tasks:
            envs.resolve(task)  # a ValueError listing the known tasks
        for key, value, least in self._counts():
            if value < least:
                raise ValueError(f"{key} must be >= {least}, got {value}")
        from envs import IMAGE_SIZE_RANGE

        lo, hi = IMAGE_SIZE_RANGE
        if not lo <= self.image_size <= hi or self.image_size % 8:
            raise ValueError(
                f"image_size must be a multiple of 8 in [{lo}, {hi}], got {self.image_size} "
                f"(the side of the square camera frame the policy reads; the environments render "
                f"{lo} to {hi} pixels and the built-in vision halves it three times)"
            )
        from agent.presets import PRESETS  # torch-free: the presets' sizes only

        preset = PRESETS.get(self.policy.preset)
        if preset is not None and preset.image_size != self.image_size:
            raise ValueError(
                f"image_size={self.image_size} but policy preset {preset.name!r} reads "
                f"{preset.image_size}x{preset.image_size} frames; set image_size="
                f"{preset.image_size} (or choose a preset of that size)"
            )
        if self.organize.replay_rounds < -1 or self.organize.replay_rounds == 0:
            raise ValueError(
                f"organize.replay_rounds must be -1 (all rounds) or >= 1, got "
                f"{self.organize.replay_rounds}"
            )
        if self.collect.vectorization not in VECTORIZATIONS:
            raise ValueError(
                f"collect.vectorization={self.collect.vectorization!r} is not supported; "
                f"expected one of {VECTORIZATIONS}"
            )
        if self.collect.min_mixed_groups and self.collect.group_size < 2:
            raise ValueError(
                f"collect.min_mixed_groups={self.collect.min_mixed_groups} needs groups: "
                f"collect.group_size must be >= 2, got {self.collect.group_size}"
            )
        if self.collect.temperature <= 0:
            raise ValueError(f"collect.temperature must be > 0, got {self.collect.temperature}")
        hindsight = [
            f"organize.{key}={getattr(self.organize, key)!r}"
            for key in ("rl_groups", "dpo_pairs")
            if getattr(self.organize, key) in ("hindsight", "trajectory")
        ]
        if hindsight and not self.organize.relabel:
            raise ValueError(
                f"{hindsight[0]} judges each sample against the instructions it achieved, which "
                "needs organize.relabel=true, got false"
            )
        unknown = [name for name in self.optimize.sequence if name not in OPTIMIZERS]
        if unknown:
            raise ValueError(
                f"unknown optimizer {unknown[0]!r} in optimize.sequence; expected any of {OPTIMIZERS}"
            )
        if self.collect.dtype not in ROLLOUT_DTYPES:
            raise ValueError(
                f"collect.dtype={self.collect.dtype!r} is not supported; expected one of "
                f"{ROLLOUT_DTYPES}"
            )
        from train.collect.chunking import EXECUTIONS

        if self.eval.execution not in EXECUTIONS:
            raise ValueError(
                f"eval.execution={self.eval.execution!r} is not supported; expected one of "
                f"{EXECUTIONS}"
            )
        if not 0.0 <= self.demos.noise <= 1.0:
            raise ValueError(
                f"demos.noise={self.demos.noise} is out of range; expected a standard deviation "
                "in [0, 1] (action units; the manipulation presets use 0.1)"
            )
        if self.collect.backend not in BACKENDS:
            raise ValueError(
                f"collect.backend={self.collect.backend!r} is not supported; expected one of "
                f"{BACKENDS}"
            )
        r = self.ray
        if r.cpus_per_worker < 0 or r.gpus_per_worker < 0:
            raise ValueError(
                f"ray.cpus_per_worker={r.cpus_per_worker} and ray.gpus_per_worker="
                f"{r.gpus_per_worker} must both be >= 0"
            )
        ips = self.collect.instructions_per_scene
        if ips < 1 or self.collect.group_size % ips:
            raise ValueError(
                f"collect.instructions_per_scene={ips} must be >= 1 and divide "
                f"collect.group_size={self.collect.group_size} (the samples of a scene are "
                "split evenly over its instructions)"
            )
        if self.collect.episodes_per_task % self.collect.group_size:
            raise ValueError(
                f"collect.episodes_per_task={self.collect.episodes_per_task} is not a multiple of "
                f"collect.group_size={self.collect.group_size}"
            )
        from verifiers.registry import check_name

        for name in self.verify.verifiers:
            try:
                check_name(name)
            except ValueError as err:
                raise ValueError(f"verify.verifiers: {err}") from None

    def _counts(self) -> list[tuple[str, int, int]]:
        """(key, value, least allowed value) of every count and size in the config."""
        c, r = self.collect, self.ray
        counts = [
            ("rounds", self.rounds, 0),
            ("demos.episodes_per_task", self.demos.episodes_per_task, 1),
            ("collect.episodes_per_task", c.episodes_per_task, 1),
            ("collect.group_size", c.group_size, 1),
            ("collect.num_envs", c.num_envs, 1),
            ("collect.top_k", c.top_k, 0),
            ("collect.chunk_episodes", c.chunk_episodes, 1),
            ("collect.min_mixed_groups", c.min_mixed_groups, 0),
            ("collect.max_refills", c.max_refills, 0),
            ("ray.num_workers", r.num_workers, 1),
            ("ray.envs_per_worker", r.envs_per_worker, 0),
            ("eval.episodes_per_task", self.eval.episodes_per_task, 1),
            ("eval.videos_per_task", self.eval.videos_per_task, 0),
        ]
        for where, update in self._updates():
            if update.max_steps is not None:
                counts.append((f"{where}.max_steps", update.max_steps, 1))
        for key in ("max_per_task", "max_pairs_per_group"):
            if getattr(self.organize, key) is not None:
                counts.append((f"organize.{key}", getattr(self.organize, key), 1))
        return counts

    def _updates(self) -> list[tuple[str, Any]]:
        return [("demos.sft", self.demos.sft)] + [
            (f"optimize.{name}", getattr(self.optimize, name)) for name in OPTIMIZERS
        ]

    # ---- every seed of a campaign, derived here from `seed` ----------------------------------

    def update_seed(self, k: int) -> int:
        """Seeds round k's updates (shuffling, augmentation) and its input-reliance probe: the
        campaign seed itself for the seed round, `seed * 1000 + k` after."""
        return self.seed if k == 0 else self.seed * 1000 + k

    def organize_seed(self, k: int) -> int:
        """Seeds round k's data choices (SFT dedup / balance, DPO pairing)."""
        return self.seed + k

    def collect_seed(self, k: int, chunk: int) -> int:
        """Seeds the policy's sampling in chunk `chunk` of round k's collection."""
        return self.seed * 1_000_003 + k * 1009 + chunk


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_campaign_config(
    path: str | Path | None = None, preset: str | None = None, overrides: list[str] | None = None
) -> CampaignConfig:
    """A preset's TOML (or a user's file, or both: the file over the preset), then `key=value` overrides."""
    data: dict = {}
    if preset is not None:
        if preset not in preset_names():
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(preset_names())}")
        data = load_toml(PRESET_DIR / f"{preset}.toml")
    if path is not None:
        _merge(data, load_toml(path))
    apply_overrides(data, list(overrides or []))
    try:
        _drop_derived_keys(data)
        _warn_about_unused_sections(data)
        return from_dict(CampaignConfig, data)
    except ConfigError as err:
        if path is None or overrides:
            raise
        raise ConfigError(f"{str(path)!r}: {err}") from None


DERIVED_KEYS = {
    "seed": "a campaign seeds every update from its own `seed` (CampaignConfig.update_seed); "
    "set the top-level `seed` instead",
    "temperature": "RL's log-probs are compared with the rollouts', sampled at "
    "`collect.temperature`; RL takes its temperature from there (set `collect.temperature`)",
}
"""Keys of the update sections that a campaign derives (`seed` of each, RL's `temperature`),
with why. A value that would have no effect (seed 0, RL's temperature equal to the
collection's: what a run directory written by an earlier version holds) is dropped; any other
is refused."""


def _drop_derived_keys(data: dict) -> None:
    organize = data.get("organize", {})
    if isinstance(organize.get("balance"), bool):  # a run directory of an earlier version
        organize["balance"] = "downsample" if organize["balance"] else "none"
    collect_temperature = data.get("collect", {}).get("temperature", CollectSection.temperature)
    sections = [("demos.sft", data.get("demos", {}).get("sft"))] + [
        (f"optimize.{name}", data.get("optimize", {}).get(name)) for name in OPTIMIZERS
    ]
    for where, section in sections:
        if not isinstance(section, dict):
            continue
        if "seed" in section:
            if section["seed"] != 0:
                raise ConfigError(
                    f"{where}.seed={section['seed']!r} would have no effect: {DERIVED_KEYS['seed']}"
                )
            del section["seed"]
        if where == "optimize.rl" and "temperature" in section:
            if section["temperature"] != collect_temperature:
                raise ConfigError(
                    f"optimize.rl.temperature={section['temperature']!r} would have no effect: "
                    f"{DERIVED_KEYS['temperature']} (collect.temperature={collect_temperature})"
                )
            del section["temperature"]


def _warn_about_unused_sections(data: dict) -> None:
    """A log warning for each `optimize.<update>` section the sequence does not run."""
    optimize = data.get("optimize", {})
    sequence = optimize.get("sequence", list(OptimizeSection().sequence))
    for name in OPTIMIZERS:
        if isinstance(optimize.get(name), dict) and name not in sequence:
            log.warning(
                "optimize.%s is set but optimize.sequence=%s does not run it; it has no effect",
                name,
                sequence,
            )


def stored_dict(config: CampaignConfig) -> dict[str, Any]:
    """The config as a run directory stores it (`config.toml`): every key, but of the update
    sections only those the sequence runs (the others would have no effect)."""
    data = to_dict(config)
    data["optimize"] = {
        key: value
        for key, value in data["optimize"].items()
        if key not in OPTIMIZERS or key in config.optimize.sequence
    }
    return data


def config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """`key: A -> B` for every key whose value differs between two resolved configs (dicts)."""
    lines = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            lines += config_differences(x, y, f"{name}.")
        elif x != y:
            lines.append(f"{name}: {x!r} -> {y!r}")
    return lines


def _merge(base: dict, top: dict) -> None:
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
