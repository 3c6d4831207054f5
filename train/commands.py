"""The `run`, `eval` and `plot` subcommands of the command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from train.config import ConfigError, dump_toml, to_dict


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
    from train.campaign import Campaign
    from train.campaign_config import load_campaign_config

    _setup_logging()
    if args.config is not None and "=" in args.config and not Path(args.config).exists():
        # argparse gives the first positional to CONFIG: `run --preset tiny rounds=1` has none.
        args.overrides.insert(0, args.config)
        args.config = None
    if args.config is None and args.preset is None and not args.resume:
        args.preset = "default"
    name = args.preset or (Path(args.config).stem if args.config else "campaign")
    out = Path(args.out or Path("runs") / name)
    stored = out / "config.toml"
    if args.resume:
        if not stored.is_file():
            raise FileNotFoundError(
                f"cannot resume: {str(stored)!r} not found; is {str(out)!r} a campaign directory?"
            )
        config = load_campaign_config(stored)
        if args.config or args.preset or args.overrides:
            asked = load_campaign_config(args.config, args.preset, args.overrides)
            if dump_toml(to_dict(asked)) != dump_toml(to_dict(config)):
                raise ConfigError(
                    f"--resume continues {str(out)!r} with its stored config.toml; the config given now "
                    "differs from it (start a new --out, or resume without a config)"
                )
    else:
        if stored.is_file():
            raise FileExistsError(
                f"{str(out)!r} already holds a campaign; pass --resume to continue it, or choose another --out"
            )
        config = load_campaign_config(args.config, args.preset, args.overrides)
    Campaign(config, out).run()
    print(f"campaign directory: {out}  (plot: {out / 'success_curve.png'})")
    return 0


def eval(args: argparse.Namespace) -> int:
    import envs
    from agent import Policy
    from agent.runtime import adapt_threads
    from train.evaluate import eval_metrics, evaluate, task_name, write_video

    _setup_logging()
    task_ids = [envs.resolve(t) for t in (args.tasks or envs.TASK_IDS)]
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    policy = Policy.from_pretrained(args.checkpoint, device=args.device)
    adapt_threads(force=True)
    results, episodes = evaluate(
        policy,
        task_ids,
        args.episodes,
        num_envs=args.num_envs,
        image_size=args.image_size,
        chunk_episodes=args.chunk_episodes,
    )
    if args.video_dir:
        for task_id in task_ids:
            e = next(e for e in episodes if e.task_id == task_id)
            write_video(e, Path(args.video_dir) / f"{task_name(task_id)}_s{e.env_seed}.mp4")
    metrics = eval_metrics(results)
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
    return 0


def plot(args: argparse.Namespace) -> int:
    from train.plots import plot_campaign, plot_comparison

    if len(args.run_dirs) == 1:
        out = plot_campaign(args.run_dirs[0], args.output)
    else:
        out = plot_comparison(args.run_dirs, args.output)
    print(out)
    return 0
