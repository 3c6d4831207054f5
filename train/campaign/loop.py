"""The self-improvement campaign: seed a policy from a few demonstrations, then round after round
collect, verify, organize, optimize, evaluate and checkpoint; resumable from its directory.

A campaign directory holds everything needed to resume, plot and audit it::

    config.toml            the resolved configuration
    state.json             the last completed step (for people; resuming reads the artifacts)
    episodes/              the episode store (every collected episode, demonstrations included)
    verdicts/round_K.jsonl every verifier's verdict on round K's episodes
    records.json           the records format (`train.rundir.integrity`)
    checkpoints/round_K/   the policy after round K (round 0: the seed policy), and beside it
                           round_K.checksums.json: each of its files' size and SHA-256
    partial/round_K.json   round K's record before its evaluation (a resume keeps it)
    metrics.jsonl          one record per round: rollout, verify, organize, train and eval metrics
    evals/round_K.jsonl    round K's held-out outcomes, one line per (task, seed), and
                           round_K.checksums.json: its size and SHA-256
    tb/                    the same metrics for TensorBoard
    videos/round_K/        MP4s of evaluation episodes
    success_curve.png      held-out success per round, per task and mean, 95% Wilson intervals
    summary.md             seed -> final success per task

Every file is written to a temporary name and renamed, and every step is a deterministic function of
the config and what earlier steps wrote, so a killed campaign resumes where it stopped and ends
with the same result as one that was never interrupted; and a resume first makes again whatever
it finds missing or damaged (`train.campaign.repair`).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import envs
from agent import Policy
from agent.runtime import adapt_threads, available_cpus, requested_threads
from train.campaign.config import CampaignConfig, stored_dict
from train.campaign.repair import repair_run
from train.campaign.typed_config import ConfigError, dump_toml
from train.collect.chunks import Chunk, make_chunks
from train.collect.collectors import Collector, make_collector
from train.collect.episodes import ExpertActor, scene_instructions
from train.collect.guided import first_start_steps, guidance_metrics, next_start_steps
from train.collect.store import EpisodeStore, StoreError
from train.organize import round_data as organize
from train.organize.datasets import mixed_groups, short_tasks
from train.paths import OutputPathError, check_output_dir, enclosing_campaign
from train.progress import progress_bar
from train.results.diagnostics import input_reliance
from train.results.evaluate import (
    breakdown_lines,
    episode_metrics,
    eval_metrics,
    evaluate,
    task_name,
    waypoint_pixels,
    write_video,
)
from train.rundir.files import atomic_write_text
from train.rundir.integrity import (
    RECORDS_FILE,
    RECORDS_FORMAT,
    record_checksums,
    records_format,
    write_records_format,
)
from train.rundir.runlog import RunLog
from train.updates import UPDATES, RoundContext
from verifiers.base import Verifier
from verifiers.environment import EnvironmentVerifier
from verifiers.episode import EXPERT_POLICY_ID, Episode, Job, Verified
from verifiers.registry import build_verifiers
from verifiers.stage import (
    decide,
    decisions_from_verdicts,
    verdicts_of,
    verify_metrics,
    verify_round,
)

log = logging.getLogger("autodidact")

ROLLOUT_SEED_STRIDE = 1_000_000
"""Round K's rollouts use seeds K * stride + i; demonstrations use 0..N-1; evaluation 10_000_000 + i."""


@dataclass
class Collection:
    """A round's collected episodes (in chunk order), and how the collection went."""

    episodes: list[Episode]
    steps_per_s: float | None
    """Env-steps per second of what was collected now; None when all was read back from the store."""
    refill_passes: int
    """Dynamic sampling's refill passes among the chunks (`Campaign.refill_plan`)."""


class Campaign:
    """One campaign directory and the policy it is improving."""

    def __init__(self, config: CampaignConfig, out_dir: str | Path):
        self.config = config
        self.out = Path(out_dir)
        self.task_ids = [envs.resolve(t) for t in config.tasks]
        self.store = EpisodeStore(self.out / "episodes")
        self.runlog = RunLog(self.out)
        self.policy: Policy | None = None
        self.records_format = RECORDS_FORMAT
        """What the run's records must hold (`train.rundir.integrity`); settled by `run`."""
        self._collector: Collector | None = None
        """Where episodes are collected (`collect.backend`): made on first use and kept for
        every collection and evaluation of the run (its vector envs cost ~0.1 s per slot to
        make; Ray workers seconds to start)."""
        self._verifiers: list[Verifier] | None = None
        self._verified_demos: Verified | None = None

    # ---- the loop -------------------------------------------------------------------------

    def check(self) -> None:
        """What the campaign needs before any work, so that a run that cannot start leaves
        nothing behind: a directory it can write, not inside another campaign's, and (until
        the seed round is done) a policy preset or model directory that loads."""
        check_output_dir(self.out, "campaign directory")
        outer = enclosing_campaign(self.out)
        if outer is not None:
            raise OutputPathError(
                f"campaign directory {str(self.out)!r} lies inside the campaign {str(outer)!r}; "
                "choose a directory outside it"
            )
        if not self.checkpoint_dir(0).exists():
            check_policy_source(self.config.policy.preset)

    def run(self) -> dict[str, Any]:
        cfg = self.config
        self.check()
        fresh = not (self.out / "config.toml").is_file()
        self.runlog.check()  # a record a resume cannot continue from: refused before any write
        self.out.mkdir(parents=True, exist_ok=True)
        self.records_format = self._settle_records_format(fresh)
        self.store.require_manifest = self.records_format >= 2
        atomic_write_text(self.out / "config.toml", dump_toml(stored_dict(cfg)) + "\n")
        self.runlog.rebuild_tensorboard()
        threads = adapt_threads(force=True)
        fixed = "fixed by AUTODIDACT_THREADS / OMP_NUM_THREADS" if requested_threads() else "auto"
        log.info("torch threads: %d of %d CPUs (%s)", threads, available_cpus(), fixed)
        try:
            repair_run(self)
            for k in range(cfg.rounds + 1):
                if self.runlog.has_round(k):
                    log.info("round %d: already complete, skipping", k)
                    continue
                record = self.seed_round() if k == 0 else self.improve_round(k)
                record.update(self.evaluate_round(k))
                self.runlog.append(k, record)
                self._report(k, record)
        finally:
            if self._collector is not None:
                self._collector.close()
                self._collector = None
        return self.finish()

    def _settle_records_format(self, fresh: bool) -> int:
        """The run's records format (`train.rundir.integrity`), written down: the current one
        in a new directory; in an existing one without records.json, what its files show."""
        if fresh:
            write_records_format(self.out, RECORDS_FORMAT)
        elif not (self.out / RECORDS_FILE).is_file():
            value = records_format(self.out)
            write_records_format(self.out, value)
            if value >= 2:
                why = "the run's checksum records show this version wrote it"
                log.info("%s was missing; written again (format %d: %s)", RECORDS_FILE, value, why)
        return records_format(self.out)

    def seed_round(self) -> dict[str, Any]:
        """Round 0: fit a fresh policy to a few scripted demonstrations per task."""
        cfg = self.config
        if self.checkpoint_dir(0).exists():
            self.policy = self.load_policy(0)
            return self.runlog.partial(0)
        demos = self._collect(0, self.demonstrator(), "demos").episodes
        policy = self._fresh_policy()
        context = RoundContext(seed=cfg.update_seed(0), temperature=cfg.collect.temperature)
        # a noise-injected demonstration can fail; the policy learns from the ones that succeed
        metrics = UPDATES["sft"].run(
            policy, [e for e in demos if e.is_success], cfg.demos.sft, context
        )
        record = {
            "demos/episodes": len(demos),
            "demos/successes": sum(e.is_success for e in demos),
            **metrics,
            **_input_reliance(policy, demos, cfg.update_seed(0)),
        }
        self.runlog.save_partial(0, record)
        self._save(0, policy)
        self.policy = self.load_policy(0)  # evaluate what was saved, as a resumed run does
        return record

    def improve_round(self, k: int) -> dict[str, Any]:
        """Round k >= 1: collect with the last policy, verify, organize, optimize, checkpoint."""
        cfg = self.config
        if self.checkpoint_dir(k).exists():
            self.policy = self.load_policy(k)
            return self.runlog.partial(k)
        self.policy = self.load_policy(k - 1)
        collection = self._collect(k, self.policy, f"round {k}: collect")
        episodes = collection.episodes
        record: dict[str, Any] = {
            "rollout/episodes": len(episodes),
            "rollout/successes": sum(e.is_success for e in episodes),
            "rollout/success_rate": sum(e.is_success for e in episodes) / max(1, len(episodes)),
        }
        if cfg.collect.min_mixed_groups:
            record["rollout/refill_passes"] = collection.refill_passes
            record["rollout/mixed_groups"] = sum(
                mixed_groups(episodes, cfg.organize.rl_groups).values()
            )
        if collection.steps_per_s is not None:
            record["rollout/steps_per_s"] = collection.steps_per_s
        if cfg.collect.guidance.guided:
            starts = self.start_steps(k) if cfg.collect.guidance.uses("demo_start") else None
            record.update(guidance_metrics(episodes, starts))
        decisions = decide(episodes, self.verifiers)
        self.runlog.write_verdicts(k, verdicts_of(decisions))
        record.update(verify_metrics(decisions))
        data = organize.build_round_data(
            self.verified_demos(),
            self.replayed_rounds(k, verify_round(episodes, decisions, cfg.organize.relabel)),
            cfg.organize,
            seed=cfg.organize_seed(k),
            uniform_rl_groups="rl" in cfg.optimize.sequence and cfg.optimize.rl.baseline == "value",
        )
        record.update(data.metrics)
        context = self.round_context(k)
        for name in cfg.optimize.sequence:
            update = UPDATES[name]
            payload = getattr(data, update.data)
            if not payload:
                log.info("round %d: %s skipped, no data (%s)", k, name, update.needs)
                record[f"train/{name}_skipped"] = 1
                continue
            start = time.perf_counter()
            record.update(update.run(self.policy, payload, getattr(cfg.optimize, name), context))
            record[f"train/{name}_seconds"] = time.perf_counter() - start  # its budget in time
        record.update(_input_reliance(self.policy, data.sft, cfg.update_seed(k)))
        self.runlog.save_partial(k, record)
        self._save(k, self.policy)
        return record

    def round_context(self, k: int) -> RoundContext:
        """What round k's updates are given beside their data: the round's update seed, the
        collection's temperature and the verified demonstrations."""
        demos = self.verified_demos()
        return RoundContext(
            seed=self.config.update_seed(k),
            temperature=self.config.collect.temperature,
            demos=tuple(
                e for e, d in zip(demos.episodes, demos.decisions, strict=True) if d.passed
            ),
        )

    def replayed_rounds(self, k: int, current: Verified) -> list[Verified]:
        """The verified sets of the rounds whose successes round k's SFT replays (oldest first):
        earlier ones from the store and their stored verdicts, this round's as just verified."""
        replay = self.config.organize.replay_rounds
        first = 1 if replay < 0 else max(1, k - replay + 1)
        outcome = {v.name for v in self.verifiers if v.judges_outcome}
        earlier = []
        for j in range(first, k):
            episodes = self.store.load(where={"round": j}, with_frames=True)
            decisions = decisions_from_verdicts(episodes, self.runlog.read_verdicts(j), outcome)
            earlier.append(verify_round(episodes, decisions, self.config.organize.relabel))
        return [*earlier, current]

    @property
    def verifiers(self) -> list[Verifier]:
        """The verifiers `verify.verifiers` names, built on first use (a learned one loads its
        model) and kept for the run."""
        if self._verifiers is None:
            self._verifiers = build_verifiers(self.config.verify.verifiers)
        return self._verifiers

    def verified_demos(self) -> Verified:
        """The demonstrations (round 0 of the store) with their decisions: verified by the
        environment, once per process."""
        if self._verified_demos is None:
            demos = self.store.load(where={"round": 0}, with_frames=True)
            self._verified_demos = Verified(demos, decide(demos, [EnvironmentVerifier()]))
        return self._verified_demos

    def evaluate_round(self, k: int) -> dict[str, Any]:
        cfg = self.config
        with progress_bar(
            len(self.task_ids) * cfg.eval.episodes_per_task, f"round {k}: eval"
        ) as bar:
            results, episodes = evaluate(
                self.policy,
                self.task_ids,
                cfg.eval.episodes_per_task,
                round=k,
                collector=self.collector(),
                chunk_episodes=cfg.collect.chunk_episodes,
                progress=bar.update,
                execution=cfg.eval.execution,
            )
        self.runlog.write_eval_outcomes(k, episodes)
        for task_id in self.task_ids:
            mine = [e for e in episodes if e.task_id == task_id][: cfg.eval.videos_per_task]
            for e in mine:
                outcome = "success" if e.is_success else "failure"
                write_video(
                    e,
                    self.out
                    / "videos"
                    / f"round_{k}"
                    / f"{task_name(task_id)}_s{e.env_seed}_{outcome}.mp4",
                    marks=waypoint_pixels(e),
                )
        metrics = {
            **eval_metrics(results),
            **episode_metrics(episodes, cfg.demos.sft.keyframes),
        }
        for line in breakdown_lines(metrics, self.task_ids):
            log.info("round %d: %s", k, line)
        return metrics

    def finish(self) -> dict[str, Any]:
        from train.results.plots import plot_campaign

        plot_campaign(self.out)
        table = self.runlog.summary_table(self.task_ids)
        atomic_write_text(self.out / "summary.md", table + "\n")
        print(table)
        return self.runlog.rows()[-1]

    # ---- helpers --------------------------------------------------------------------------

    def demonstrator(self) -> Any:
        """Who records round 0's demonstrations: the scripted expert, its moves noise-injected
        by `demos.noise` (each episode's noise drawn from the campaign seed and its job)."""
        if not self.config.demos.noise:
            return EXPERT_POLICY_ID
        return ExpertActor(self.config.demos.noise, seed=self.config.collect_seed(0, 0))

    def _jobs(self, k: int, refill: int = 0, tasks: list[str] | None = None) -> list[Job]:
        """Round k's collection: the demonstrations (k = 0), else group_size rollouts of each
        of episodes_per_task / group_size seeds per task (of `tasks`, default all); refill pass
        p >= 1 (dynamic sampling) takes the next seeds_per_task fresh seeds."""
        cfg = self.config
        if k == 0:
            return [
                Job(t, i, "demo") for t in self.task_ids for i in range(cfg.demos.episodes_per_task)
            ]
        seeds_per_task = cfg.collect.episodes_per_task // cfg.collect.group_size
        first = k * ROLLOUT_SEED_STRIDE + refill * seeds_per_task
        n = cfg.collect.instructions_per_scene
        if n == 1:
            return [
                Job(t, first + i, f"g{g}")
                for t in (self.task_ids if tasks is None else tasks)
                for i in range(seeds_per_task)
                for g in range(cfg.collect.group_size)
            ]
        return [
            Job(t, seed, f"i{j}g{g}", instruction=text)
            for t in (self.task_ids if tasks is None else tasks)
            for seed in range(first, first + seeds_per_task)
            for j, text in enumerate(scene_instructions(t, seed, n))
            for g in range(cfg.collect.group_size // n)
        ]

    def chunks(self, k: int, plan: list[list[str]] | None = None) -> list[Chunk]:
        """Round k's chunks: its jobs cut into `collect.chunk_episodes`, then those of each
        refill pass of `plan` (default: the passes the round has needed so far, `refill_plan`)."""
        cfg = self.config
        sampling: dict[str, Any] = dict(
            temperature=cfg.collect.temperature, top_k=cfg.collect.top_k
        )
        if k >= 1 and cfg.collect.guidance.guided:
            starts = self.start_steps(k) if cfg.collect.guidance.uses("demo_start") else {}
            sampling.update(
                guidance=cfg.collect.guidance, start_steps=tuple(sorted(starts.items()))
            )
        passes = [self._jobs(k)]
        if plan is None:
            plan = self.refill_plan(k)
        passes += [self._jobs(k, p, tasks) for p, tasks in enumerate(plan, 1)]
        chunks: list[Chunk] = []
        for jobs in passes:
            chunks += make_chunks(
                jobs,
                cfg.collect.chunk_episodes,
                k,
                lambda c: cfg.collect_seed(k, c),
                first=len(chunks),
                **sampling,
            )
        return chunks

    def refill_plan(self, k: int) -> list[list[str]]:
        """Dynamic sampling: the tasks of each refill pass of round k, from the outcomes stored
        so far. A pass follows when, over the round's episodes until then, a task has fewer
        than `collect.min_mixed_groups` groups with mixed outcomes (the groups RL learns from);
        it collects fresh seeds of those tasks; at most `collect.max_refills` passes, so a round
        where every rollout succeeds (or fails) ends. The plan stops at the first pass the store
        does not hold yet."""
        cfg = self.config.collect
        if k < 1 or not cfg.min_mixed_groups:
            return []
        try:
            stored = {e.episode_id: e for e in self.store.load(where={"round": k})}
        except StoreError:  # a store being repaired: its refill parts are collected again
            return []

        def held(jobs: list[Job]) -> list[Episode] | None:
            found = [stored.get(job.episode_id(k)) for job in jobs]
            return None if any(e is None for e in found) else found

        episodes = held(self._jobs(k))
        plan: list[list[str]] = []
        while episodes is not None and len(plan) < cfg.max_refills:
            short = short_tasks(
                episodes, self.task_ids, cfg.min_mixed_groups, self.config.organize.rl_groups
            )
            if not short:
                break
            plan.append(short)
            more = held(self._jobs(k, len(plan), short))
            episodes = None if more is None else episodes + more
        return plan

    def start_steps(self, k: int) -> dict[str, int]:
        """demo_start guidance: each task's start step in round k, from the guided success of
        rounds 1..k-1 (their records: `guide/success_rate/<task>`)."""
        guidance = self.config.collect.guidance
        records = [self.runlog.partial(j) for j in range(1, k)]
        first = (
            first_start_steps(guidance, self.verified_demos().episodes)
            if guidance.start_fraction > 0
            else None
        )
        return next_start_steps(guidance, self.task_ids, records, first)

    def _collect(self, k: int, policy: Any, desc: str) -> Collection:
        """Collect round k's chunks (`chunks`), and, while dynamic sampling asks for a refill
        pass, its chunks too."""
        steps, seconds, known = 0, 0.0, None
        while True:
            plan = self.refill_plan(k)
            if plan == known:
                break
            chunks = self.chunks(k, plan)
            episodes, more_steps, more_seconds = self._collect_chunks(k, chunks, policy, desc)
            steps, seconds, known = steps + more_steps, seconds + more_seconds, plan
        if seconds > 0:
            log.info("%s: %d env-steps at %.1f steps/s", desc, steps, steps / seconds)
        return Collection(
            episodes,
            steps_per_s=steps / seconds if seconds > 0 else None,
            refill_passes=len(plan),
        )

    def _collect_chunks(
        self, k: int, chunks: list[Chunk], policy: Any, desc: str
    ) -> tuple[list[Episode], int, float]:
        """Collect the chunks the store lacks, storing each in order as soon as it and the
        chunks before it are back, and skipping chunks a previous (killed) run already stored;
        the episodes of all `chunks`, the env-steps collected and the seconds it took."""
        cfg = self.config
        jobs = [job for chunk in chunks for job in chunk.jobs]
        stored = {e.episode_id: e for e in self.store.load(where={"round": k}, with_frames=True)}
        done: dict[int, list[Episode]] = {}
        todo = []
        for chunk in chunks:
            ids = [j.episode_id(k) for j in chunk.jobs]
            if all(i in stored for i in ids):
                done[chunk.index] = [stored[i] for i in ids]
            else:
                todo.append(chunk)
        unstored = {chunk.index for chunk in todo}
        next_to_store = 0
        collector = self.collector()
        steps, start = 0, time.perf_counter()
        with progress_bar(len(jobs), desc) as bar:
            bar.update(len(jobs) - sum(len(c.jobs) for c in todo))
            for chunk, new in collector.collect(
                todo, policy, cfg.collect.dtype, progress=bar.update
            ):
                done[chunk.index] = new
                steps += sum(e.length for e in new)
                while next_to_store < len(chunks) and next_to_store in done:
                    if next_to_store in unstored:
                        label = {"round": k, "chunk": next_to_store}
                        self.store.append(done[next_to_store], label=label)
                    next_to_store += 1
        seconds = time.perf_counter() - start if todo else 0.0
        return [e for c in range(len(chunks)) for e in done[c]], steps, seconds

    def collector(self) -> Collector:
        """The run's collector (`collect.backend`), made on first use."""
        if self._collector is None:
            self._collector = make_collector(self.config, self.task_ids)
            self._collector.start()  # envs made / workers up before any timing starts
        return self._collector

    def _fresh_policy(self) -> Policy:
        cfg = self.config.policy
        if Path(cfg.preset).exists():
            return Policy.from_pretrained(cfg.preset, device=self._device())
        return Policy.from_preset(cfg.preset, seed=self.config.seed, device=self._device())

    def _device(self) -> str:
        device = self.config.policy.device
        if device == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return device

    def checkpoint_dir(self, k: int) -> Path:
        return self.out / "checkpoints" / f"round_{k}"

    def _save(self, k: int, policy: Policy) -> None:
        final = self.checkpoint_dir(k)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        policy.policy_id = f"round_{k}"
        policy.save_pretrained(tmp)
        record_checksums(tmp, final)  # before the rename: a checkpoint never lacks its record
        tmp.rename(final)
        self.policy = self.load_policy(k)

    def load_policy(self, k: int) -> Policy:
        return Policy.from_pretrained(self.checkpoint_dir(k), device=self._device())

    def _report(self, k: int, record: dict[str, Any]) -> None:
        keys = [
            "demos/episodes", "rollout/episodes", "rollout/successes", "verify/passed",
            "organize/relabelled", "organize/sft_episodes", "organize/rl_groups",
            "organize/dpo_pairs", "train/sft_loss", "train/rl_loss", "train/dpo_loss",
            "diag/image_gain", "diag/instruction_gain", "eval/success_rate",
        ]  # fmt: skip
        parts = [f"{key.split('/', 1)[1]}={_fmt(record[key])}" for key in keys if key in record]
        log.info("round %d: %s", k, " ".join(parts))


def check_policy_source(preset: str) -> None:
    """`policy.preset` is a built-in preset, or a directory whose config.json loads as a model
    family the policy supports; ConfigError naming it otherwise (before any demonstration)."""
    from agent.presets import PRESETS

    expected = f"expected a built-in preset ({', '.join(PRESETS)}) or a local model directory"
    path = Path(preset).expanduser()
    if not path.exists():
        if preset in PRESETS:
            return
        looks_like_path = "/" in preset or preset.startswith((".", "~"))
        problem = "no such directory" if looks_like_path else "unknown policy preset"
        raise ConfigError(f"policy.preset={preset!r}: {problem}; {expected}")
    if not path.is_dir():
        raise ConfigError(f"policy.preset={preset!r} is a file; {expected}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConfigError(
            f"policy.preset={preset!r}: {str(config_file)!r} not found; {expected} "
            "(saved with save_pretrained)"
        )
    from transformers import AutoConfig

    from agent.checkpoint import get_family

    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, KeyError, OSError) as err:
        reason = " ".join(str(err).split())
        raise ConfigError(
            f"policy.preset={preset!r}: {str(config_file)!r} does not load ({reason})"
        ) from None
    try:
        get_family(config.model_type, str(path))
    except ValueError as err:
        raise ConfigError(f"policy.preset={preset!r}: {err}") from None


def _input_reliance(policy: Policy, episodes: list[Episode], seed: int) -> dict[str, float]:
    """How much the updated policy reads the image and the instruction, on (a subsample of) the
    data it was trained on; nothing when that data has fewer than two steps."""
    if sum(e.length for e in episodes) < 2:
        return {}
    return input_reliance(policy, episodes, max_steps=256, seed=seed)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
