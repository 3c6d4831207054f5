"""`autodidact check-task NAME`: a task's contract (`envs.contract`) over many seeds, the
gymnasium API, seeded resets, and the success rates that make it learnable: the scripted expert
(actions quantized to the policy's action bins, recorded by the campaign's own collector, as
demonstrations are) near 1, uniform random actions near 0."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import envs
from envs.contract import TaskContractError, check_scene, task_label


@dataclass
class CheckResult:
    """One row of `autodidact check-task`'s table."""

    check: str
    passed: bool
    detail: str


def success_rate(task_id: str, seeds: range, actor: str) -> tuple[float, float]:
    """(success rate, mean length) of `actor` ("expert": the scripted expert with its actions
    quantized to action bins; "random": uniform action bins), one episode per seed, through the
    campaign's collector; TaskContractError if an episode's end and its success disagree (an
    episode terminates exactly when it succeeds, else the time limit truncates it)."""
    from train.collect.episodes import collect_episodes
    from verifiers.episode import Job

    jobs = [Job(task_id, seed, tag=actor) for seed in seeds]
    episodes = collect_episodes(jobs, actor, num_envs=min(8, len(jobs)), seed=seeds.start)
    for episode in episodes:
        if episode.is_success == episode.truncated:
            ended = "by the time limit" if episode.truncated else "terminated"
            raise TaskContractError(
                f"task {task_id}, seed {episode.env_seed}: the episode {ended} with "
                f"is_success={episode.is_success}; an episode terminates exactly when it succeeds"
            )
    return (
        float(np.mean([e.is_success for e in episodes])),
        float(np.mean([e.length for e in episodes])),
    )


def check_task(task: str, episodes: int = 20, scene_seeds: int = 20) -> list[CheckResult]:
    """Every check of `autodidact check-task` for one task, in order; stops after a check that
    leaves nothing to run (the task does not load)."""
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    results: list[CheckResult] = []

    def run(check: str, body: Callable[[], str]) -> bool:
        try:
            detail = body()
        except Exception as err:  # noqa: BLE001 -- a check reports any failure as a row
            results.append(CheckResult(check, False, f"{type(err).__name__}: {err}"))
            return False
        results.append(CheckResult(check, True, detail))
        return True

    task_id = envs.resolve(task)
    if not run("loads", lambda: f"{envs.load_task(task_id).__module__}"):
        return results
    env = envs.make(task_id)
    try:

        def scenes() -> str:
            instructions = set()
            for seed in range(scene_seeds):
                obs, _ = env.reset(seed=seed)
                check_scene(env.unwrapped)
                instructions.add(obs["instruction"])
            if len(instructions) < 3:
                raise TaskContractError(
                    f"task {task_label(env.unwrapped)}: seeds 0-{scene_seeds - 1} give "
                    f"{len(instructions)} different instruction(s) {sorted(instructions)}; "
                    "expected at least 3 (vary the named goal and the template with the seed)"
                )
            return f"{scene_seeds} seeds, {len(instructions)} different instructions"

        run("contract (goal, goals, reward terms)", scenes)

        def gymnasium_api() -> str:
            rendered = gymnasium.make(task_id, render_mode="rgb_array")
            try:
                check_env(rendered.unwrapped, skip_render_check=False)
            finally:
                rendered.close()
            return "gymnasium.utils.env_checker.check_env passes"

        run("gymnasium API", gymnasium_api)

        def deterministic() -> str:
            first = env.reset(seed=7)[0]["image"].copy()
            env.reset(seed=8)
            again = env.reset(seed=7)[0]["image"]
            if not np.array_equal(first, again):
                raise AssertionError("reset(seed=7) twice gave different images")
            return "same seed, same first frame"

        run("seeded reset", deterministic)
    finally:
        env.close()

    def expert() -> str:
        rate, length = success_rate(task_id, range(1000, 1000 + episodes), "expert")
        if rate < 0.9:
            raise AssertionError(
                f"expert success {rate:.2f} over {episodes} seeds; expected >= 0.90 (watch it "
                f"with `autodidact expert {task} --video expert.mp4`)"
            )
        return f"expert success {rate:.2f} over {episodes} seeds (mean length {length:.1f})"

    run("scripted expert >= 0.90", expert)

    def random() -> str:
        rate, _ = success_rate(task_id, range(episodes), "random")
        if rate > 0.1:
            raise AssertionError(
                f"random-action success {rate:.2f} over {episodes} seeds; expected <= 0.10 "
                "(the task is too easy to show learning: tighten the success predicate)"
            )
        return f"random-action success {rate:.2f} over {episodes} seeds"

    run("random actions <= 0.10", random)
    return results
