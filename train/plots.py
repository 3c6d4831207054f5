"""Plots of success-rate curves: one campaign per task, or several campaigns compared."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-round evaluation records of a campaign directory (`metrics.jsonl`), in round order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} not found: is {str(run_dir)!r} a campaign directory?"
        )
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{str(path)!r} line {n} is not JSON: {err}") from err
    rows = [r for r in rows if "eval/success_rate" in r]
    return sorted(rows, key=lambda r: r["round"])


def _series(
    rows: list[dict], suffix: str = ""
) -> tuple[list[int], list[float], list[float], list[float]]:
    rounds = [r["round"] for r in rows]
    rate = [r[f"eval/success_rate{suffix}"] for r in rows]
    lo = [r[f"eval/ci_low{suffix}"] for r in rows]
    hi = [r[f"eval/ci_high{suffix}"] for r in rows]
    return rounds, rate, lo, hi


def task_names(rows: list[dict]) -> list[str]:
    prefix = "eval/success_rate/"
    return sorted({k[len(prefix) :] for r in rows for k in r if k.startswith(prefix)})


def plot_campaign(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """`success_curve.png`: success rate per round, per task and pooled mean, 95% Wilson bands."""
    rows = read_metrics(run_dir)
    out = Path(out) if out else Path(run_dir) / "success_curve.png"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in task_names(rows):
        rounds, rate, lo, hi = _series(rows, f"/{name}")
        (line,) = ax.plot(rounds, rate, marker="o", lw=1.2, label=name)
        ax.fill_between(rounds, lo, hi, color=line.get_color(), alpha=0.12)
    rounds, rate, lo, hi = _series(rows)
    ax.plot(rounds, rate, marker="s", lw=2.5, color="black", label="mean")
    ax.fill_between(rounds, lo, hi, color="black", alpha=0.15)
    _finish(ax, f"{Path(run_dir).name}: held-out success (95% Wilson)")
    return _save(fig, out)


def plot_comparison(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Several campaigns' pooled success curves on one plot, each with its 95% Wilson band."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run_dir in run_dirs:
        rounds, rate, lo, hi = _series(read_metrics(run_dir))
        (line,) = ax.plot(rounds, rate, marker="o", lw=2, label=Path(run_dir).name)
        ax.fill_between(rounds, lo, hi, color=line.get_color(), alpha=0.15)
    _finish(ax, "held-out success per round (95% Wilson)")
    return _save(fig, Path(out))


def _finish(ax, title: str) -> None:
    ax.set_xlabel("round (0 = seed policy)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    fig.tight_layout()
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)
    return out
