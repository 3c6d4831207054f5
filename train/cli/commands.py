"""The `run`, `eval`, `plot`, `compare`, `export` and `verify-run` subcommands of the command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from train.campaign.typed_config import ConfigError, to_dict


def _setup_logging() -> None:
    """Our progress lines on stdout; other libraries' INFO chatter and load bars stay quiet."""
    import transformers

    logger = logging.getLogger("autodidact")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    transformers.logging.disable_progress_bar()


def run(args: argparse.Namespace) -> int:
    _setup_logging()
    if args.config is not None and "=" in args.config and not Path(args.config).exists():
        # argparse gives the first positional to CONFIG: `run --preset tiny rounds=1` has none.
        args.overrides.insert(0, args.config)
        args.config = None
    if args.config is None and args.preset is None and not args.resume:
        args.preset = "default"
    name = args.preset or (Path(args.config).stem if args.config else "campaign")
    out = Path(args.out or Path("runs") / name)
    if not args.seeds:
        _run_campaign(out, args.config, args.preset, args.overrides, resume=args.resume)
        print(f"campaign directory: {out}  (plot: {out / 'success_curve.png'})")
        return 0
    return _run_seeds(args, out)


def _run_campaign(
    out: Path, config: str | None, preset: str | None, overrides: list[str], resume: bool
) -> None:
    """Start a campaign in `out`, or (`resume`) continue the one there, checking that a config
    given again (file, preset or overrides) is the stored one."""
    from train.campaign.config import config_differences, load_campaign_config
    from train.campaign.loop import Campaign

    stored = out / "config.toml"
    if resume:
        if not stored.is_file():
            raise FileNotFoundError(
                f"cannot resume: {str(stored)!r} not found; is {str(out)!r} a campaign directory?"
            )
        resolved = load_campaign_config(stored)
        if config or preset or overrides:
            # overrides alone are laid over the stored config (not a preset's): only the keys
            # the user names can differ
            base = config if config or preset else stored
            asked = load_campaign_config(base, preset, overrides)
            differences = config_differences(to_dict(resolved), to_dict(asked))
            if differences:
                raise ConfigError(
                    f"--resume continues {str(out)!r} with its stored config.toml; the config given "
                    f"now differs from it in {'; '.join(differences)} (stored -> given; start a "
                    "new --out, or resume without a config)"
                )
    else:
        if stored.is_file():
            raise FileExistsError(
                f"{str(out)!r} already holds a campaign; pass --resume to continue it, or choose another --out"
            )
        resolved = load_campaign_config(config, preset, overrides)
    Campaign(resolved, out).run()


def _run_seeds(args: argparse.Namespace, out: Path) -> int:
    """One campaign per seed into OUT/seed_S, one after another. `--resume` continues the seeds
    begun and starts the others (from the given config, else from a begun seed's stored one).
    Every seed's config is checked before the first campaign starts."""
    from train.campaign.config import load_campaign_config
    from train.results.plots import plot_seeds, seeds_table

    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds {args.seeds} repeats a seed")
    if any(o.split("=", 1)[0].strip() == "seed" for o in args.overrides):
        raise ConfigError("--seeds sets `seed` for each campaign; drop the seed=... override")
    if not args.resume and out.exists() and any(out.iterdir()):
        raise FileExistsError(
            f"{str(out)!r} is not empty; pass --resume to continue its seeds, or choose another --out"
        )
    begun = [s for s in args.seeds if (out / f"seed_{s}" / "config.toml").is_file()]
    given = bool(args.config or args.preset or args.overrides)
    if args.resume and not begun and not given:
        raise FileNotFoundError(
            f"cannot resume: no seed_S campaign in {str(out)!r}; start it with a preset or config"
        )
    config, preset = args.config, args.preset
    if not given:
        config = str(out / f"seed_{begun[0]}" / "config.toml")
    plan = []
    for seed in args.seeds:
        overrides = [*args.overrides, f"seed={seed}"]
        load_campaign_config(config, preset, overrides)  # a bad config fails before any run
        plan.append((out / f"seed_{seed}", overrides, seed in begun))
    for run_dir, overrides, resume in plan:
        logging.getLogger("autodidact").info("campaign seed directory %s", run_dir)
        _run_campaign(run_dir, config, preset, overrides, resume=resume)
    figure = plot_seeds(out)
    print(seeds_table(out))
    print(f"seed directories: {out}/seed_*  (plot: {figure})")
    return 0


def eval(args: argparse.Namespace) -> int:
    import envs
    from agent import Policy
    from agent.runtime import adapt_threads
    from train.results.evaluate import (
        breakdown_lines,
        episode_metrics,
        eval_metrics,
        evaluate,
        task_name,
        waypoint_pixels,
        write_video,
    )
    from train.rundir.integrity import checksum_problem

    _setup_logging()
    task_ids = [envs.resolve(t) for t in (args.tasks or envs.TASK_IDS)]
    for flag, value in [("--episodes", args.episodes), ("--num-envs", args.num_envs),
                        ("--chunk-episodes", args.chunk_episodes)]:  # fmt: skip
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    checkpoint = Path(args.checkpoint)
    problem = checksum_problem(checkpoint, required=False) if checkpoint.is_dir() else None
    if problem is not None:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r}: {problem}; not evaluated (`autodidact run --resume "
            "--out RUN` trains a campaign's damaged checkpoint again)"
        )
    policy = Policy.from_pretrained(checkpoint, device=args.device)
    adapt_threads(force=True)
    results, episodes = evaluate(
        policy,
        task_ids,
        args.episodes,
        num_envs=args.num_envs,
        image_size=args.image_size,
        chunk_episodes=args.chunk_episodes,
        execution=args.execution,
    )
    if args.video_dir:
        for task_id in task_ids:
            e = next(e for e in episodes if e.task_id == task_id)
            write_video(
                e,
                Path(args.video_dir) / f"{task_name(task_id)}_s{e.env_seed}.mp4",
                marks=waypoint_pixels(e),
            )
    metrics = {**eval_metrics(results), **episode_metrics(episodes, args.keyframes)}
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), **metrics}, indent=2))
        return 0
    print(f"{'task':<22} {'success':>8}  95% interval   mean length")
    for task_id, r in results.items():
        lo, hi = r.interval
        print(
            f"{task_name(task_id):<22} {r.success_rate:>8.2f}  [{lo:.2f}, {hi:.2f}]   {r.mean_length:.1f}"
        )
    print(
        f"{'mean':<22} {metrics['eval/success_rate']:>8.2f}  [{metrics['eval/ci_low']:.2f}, {metrics['eval/ci_high']:.2f}]"
    )
    for line in breakdown_lines(metrics, task_ids):
        print(line)
    return 0


def plot(args: argparse.Namespace) -> int:
    from train.paths import check_output_file
    from train.results.plots import is_seed_sweep, plot_campaign, plot_comparison, plot_seeds

    check_output_file(args.output)
    if len(args.run_dirs) == 1 and is_seed_sweep(args.run_dirs[0]):
        out = plot_seeds(args.run_dirs[0], args.output)
    elif len(args.run_dirs) == 1:
        out = plot_campaign(args.run_dirs[0], args.output)
    else:
        out = plot_comparison(args.run_dirs, args.output)
    print(out)
    return 0


def compare(args: argparse.Namespace) -> int:
    """`autodidact compare RUN_A[:ROUND] RUN_B[:ROUND] ... [--json]`."""
    from train.results.compare import compare_runs, format_report

    baseline, results = compare_runs(args.runs)
    if args.json:
        print(json.dumps({"baseline": baseline.label, "comparisons": results}, indent=2))
    else:
        print(format_report(results))
    sys.stdout.flush()
    return 0


def export(args: argparse.Namespace) -> int:
    """`autodidact export RUN_DIR --format lerobot --out DIR [--verified-only] [--tasks ...]
    [--rounds ...] [--fps N]`: export, then print one line saying what was written."""
    from train.results.export import CODEBASE_VERSION
    from train.results.export import export as export_run

    summary = export_run(
        args.run_dir,
        args.out,
        args.format,
        verified_only=args.verified_only,
        tasks=args.tasks or None,
        rounds=args.rounds or None,
        fps=args.fps,
    )
    print(
        f"exported {summary['episodes']} episodes ({summary['frames']} frames, "
        f"{summary['tasks']} tasks) from {args.run_dir} as a LeRobotDataset {CODEBASE_VERSION} "
        f"to {summary['out']}"
    )
    return 0


def verify_run(args: argparse.Namespace) -> int:
    from train.campaign.audit import verify_run

    return verify_run(args)
