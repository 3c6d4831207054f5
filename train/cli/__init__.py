"""The `autodidact` command line: one subcommand per user task, each implemented in its own module."""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autodidact",
        description="Simulated self-improvement of a multimodal LLM policy in MuJoCo tasks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    imports = argparse.ArgumentParser(add_help=False)
    imports.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        help="import MODULE first (a module that registers tasks outside envs/); repeatable",
    )

    p = sub.add_parser("envs", help="list the registered tasks", parents=[imports])
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    p = sub.add_parser(
        "new-task", help="write a working task skeleton: module, MJCF, registration line"
    )
    p.add_argument("name", help="the task's short name in snake_case, e.g. lift_cube")
    p.add_argument("--dir", default=None, help="where to write it (default: the envs package)")
    p.add_argument(
        "--package", default=None, help="dotted package of --dir (default: its folder name)"
    )

    p = sub.add_parser(
        "check-task",
        help="check one task: its contract, the gymnasium API, expert and random success",
        parents=[imports],
    )
    p.add_argument("task", help="task id or short name")
    p.add_argument("--episodes", type=int, default=20, help="seeds for each success rate")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "expert",
        help="run a task's scripted expert and report its success rate",
        parents=[imports],
    )
    p.add_argument("task", help="task id (e.g. autodidact/ReachBall-v0) or its short name")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--video", default=None, help="write an MP4 of the first episode here")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("run", help="run (or resume) a self-improvement campaign")
    p.add_argument(
        "config", nargs="?", default=None, help="a campaign TOML file (over the preset, if both)"
    )
    p.add_argument("--preset", default=None, help="a shipped preset: tiny, default, full")
    p.add_argument(
        "--out", default=None, help="campaign directory (default: runs/<preset or config name>)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the campaign in --out from its last completed step",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        metavar="S",
        help="run the campaign once per seed S (overriding `seed`), into --out/seed_S, one after "
        "another; then plot the mean curve with its interval across seeds",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. rounds=2 collect.num_envs=8",
    )

    p = sub.add_parser("eval", help="evaluate a checkpoint on the held-out seeds")
    p.add_argument("checkpoint", help="a policy directory (e.g. RUN/checkpoints/round_3)")
    p.add_argument("--tasks", nargs="+", default=None, help="task names or ids (default: all)")
    p.add_argument("--episodes", type=int, default=30, help="held-out episodes per task")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument(
        "--chunk-episodes",
        type=int,
        default=None,
        help="episodes per vector-env run (default: all); with a campaign's collect.num_envs and "
        "collect.chunk_episodes it reproduces the campaign's evaluation exactly",
    )
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--execution",
        default="ensemble",
        choices=("ensemble", "ensemble_all", "replan", "open_loop"),
        help="how a chunk policy's greedy decisions are executed (train/collect/chunking.py): "
        "temporal ensembling of the moves with the newest chunk's fingers (default), everything "
        "blended, the first step of each decision, or whole chunks; ignored for other policies",
    )
    p.add_argument(
        "--keyframes",
        default="gripper",
        choices=("gripper", "gripper_and_moves"),
        help="the keyframes the waypoint error is measured against (the kind the policy learnt)",
    )
    p.add_argument("--video-dir", default=None, help="write one MP4 per task here")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "compare",
        help="paired difference in held-out success between campaigns or rounds (95%% intervals)",
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN[:ROUND]",
        help="campaign directories, each optionally with a round (default: its last); the first "
        "is the baseline",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "export", help="export a campaign's episodes as a dataset other tools read (LeRobot v3.0)"
    )
    p.add_argument("run_dir", help="a campaign directory")
    p.add_argument("--format", default="lerobot", help="the dataset format: lerobot")
    p.add_argument("--out", required=True, help="a new (or empty) directory to write")
    p.add_argument(
        "--verified-only", action="store_true", help="only episodes every verifier passed"
    )
    p.add_argument("--tasks", nargs="+", default=None, help="only these tasks (names or ids)")
    p.add_argument("--rounds", nargs="+", type=int, default=None, help="only these rounds")
    p.add_argument("--fps", type=int, default=10, help="frames per second written in the dataset")

    p = sub.add_parser(
        "verify-run",
        help="check a campaign directory: every stored part, checkpoint file and held-out "
        "outcome file against its recorded size and checksum, each round's records; say what "
        "repairs each problem (exit 1) or which rounds are not run yet (exit 1)",
    )
    p.add_argument("run_dir", help="a campaign directory")

    p = sub.add_parser(
        "plot",
        help="plot the success curves of one or more campaigns (or multi-seed runs: mean and "
        "95%% interval across seeds)",
    )
    p.add_argument("run_dirs", nargs="+", help="campaign directories, or --seeds directories")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("envs", "expert", "new-task", "check-task"):
            from train.cli import expert

            code = expert.main(args)
        else:
            from train.cli import commands

            code = getattr(commands, args.command.replace("-", "_"))(args)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader went away (`autodidact envs | head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as err:
        # Bad input (a config key, a task name, a path one cannot write, a full disk): say what
        # is wrong, without a traceback.
        if os.environ.get("AUTODIDACT_DEBUG"):
            raise
        print(f"autodidact {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
