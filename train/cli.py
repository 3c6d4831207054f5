"""The `autodidact` command line: one subcommand per user task, each implemented in its own module."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autodidact",
        description="Simulated self-improvement of a multimodal LLM policy in MuJoCo tasks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("envs", help="list the registered tasks")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    p = sub.add_parser("expert", help="run a task's scripted expert and report its success rate")
    p.add_argument("task", help="task id (e.g. autodidact/ReachBall-v0) or its short name")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--video", default=None, help="write an MP4 of the first episode here")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("envs", "expert"):
        from train import expert

        return expert.main(args)
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
