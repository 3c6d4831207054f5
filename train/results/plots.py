"""Plots of success-rate curves: one campaign per task, or several campaigns compared."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from train.rundir.runlog import RunLog  # noqa: E402


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-round evaluation records of a campaign directory (`metrics.jsonl`), in round order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} not found: is {str(run_dir)!r} a campaign directory?"
        )
    rows = [r for r in RunLog(run_dir).rows() if "eval/success_rate" in r]
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
    """Several campaigns' pooled success curves on one plot, each with its 95% Wilson band; a
    multi-seed directory is drawn as its mean over seeds with the 95% t-interval across seeds."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run_dir in run_dirs:
        if is_seed_sweep(run_dir):
            curve = seeds_curve(run_dir)
            rounds, rate, lo, hi = curve["rounds"], curve["mean"], curve["low"], curve["high"]
            label = f"{Path(run_dir).name} (mean of {len(curve['seeds'])} seeds)"
        else:
            rounds, rate, lo, hi = _series(read_metrics(run_dir))
            label = Path(run_dir).name
        (line,) = ax.plot(rounds, rate, marker="o", lw=2, label=label)
        ax.fill_between(rounds, lo, hi, color=line.get_color(), alpha=0.15)
    _finish(ax, "held-out success per round (95% bands)")
    return _save(fig, Path(out))


# ---- several campaign seeds ----------------------------------------------------------------


def seed_runs(sweep_dir: str | Path) -> list[Path]:
    """The campaigns of a multi-seed run (`autodidact run --seeds`): `seed_S/` folders with
    metrics, in seed order."""
    runs = [
        p
        for p in Path(sweep_dir).glob("seed_*")
        if p.name[5:].isdigit() and (p / "metrics.jsonl").is_file()
    ]
    return sorted(runs, key=lambda p: int(p.name[5:]))


def is_seed_sweep(path: str | Path) -> bool:
    return not (Path(path) / "metrics.jsonl").is_file() and bool(seed_runs(path))


def seeds_curve(sweep_dir: str | Path, suffix: str = "") -> dict[str, list]:
    """Per round (that every seed has reached): the seeds' success rates, their mean and the 95%
    t-interval of that mean across seeds, clipped to [0, 1] (`suffix`: `/TaskName` for one task,
    "" pooled)."""
    from train.results.stats import t_interval

    runs = seed_runs(sweep_dir)
    if not runs:
        raise FileNotFoundError(
            f"no seed_S campaign with metrics in {str(sweep_dir)!r}: is it a `run --seeds` "
            "directory?"
        )
    per_run = [{r["round"]: r[f"eval/success_rate{suffix}"] for r in read_metrics(p)} for p in runs]
    rounds = sorted(set.intersection(*(set(m) for m in per_run)))
    curve: dict[str, list] = {"rounds": rounds, "seeds": [int(p.name[5:]) for p in runs]}
    curve["per_seed"] = [[m[k] for k in rounds] for m in per_run]
    # A success rate lies in [0, 1]; so does its interval (the t-interval can overshoot).
    stats = [_clip(t_interval([m[k] for m in per_run])) for k in rounds]
    curve["mean"], curve["low"], curve["high"] = (
        [x[0] for x in stats],
        [x[1] for x in stats],
        [x[2] for x in stats],
    )
    return curve


def _clip(stat: tuple[float, float, float]) -> tuple[float, float, float]:
    mean, lo, hi = stat
    return mean, max(0.0, lo), min(1.0, hi)


def plot_seeds(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """`seeds_curve.png`: each seed's mean held-out success per round (thin), their mean (thick)
    and its 95% t-interval across seeds (band); one panel pooled, one per task."""
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out else sweep_dir / "seeds_curve.png"
    names = task_names(read_metrics(seed_runs(sweep_dir)[0]))
    panels = [("mean over tasks", "")] + [(name, f"/{name}") for name in names]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (title, suffix) in zip(axes[0], panels, strict=True):
        curve = seeds_curve(sweep_dir, suffix)
        for seed, values in zip(curve["seeds"], curve["per_seed"], strict=True):
            ax.plot(curve["rounds"], values, lw=0.9, alpha=0.45, marker=".", label=f"seed {seed}")
        ax.plot(curve["rounds"], curve["mean"], lw=2.5, color="black", marker="s", label="mean")
        ax.fill_between(curve["rounds"], curve["low"], curve["high"], color="black", alpha=0.15)
        _finish(ax, title)
    n = len(seed_runs(sweep_dir))
    fig.suptitle(
        f"{sweep_dir.name}: held-out success over {n} campaign seeds "
        "(band: 95% t-interval of the mean across seeds)",
        fontsize=10,
    )
    return _save(fig, out)


def seeds_table(sweep_dir: str | Path) -> str:
    """Markdown: per round, each seed's pooled success and the mean with its 95% t-interval."""
    curve = seeds_curve(sweep_dir)
    head = " | ".join(f"seed {s}" for s in curve["seeds"])
    lines = [
        f"| round | {head} | mean [95% t across seeds] |",
        "| --- |" + " --- |" * (len(curve["seeds"]) + 1),
    ]
    for i, k in enumerate(curve["rounds"]):
        cells = " | ".join(f"{100 * v[i]:.0f}%" for v in curve["per_seed"])
        lines.append(
            f"| {k} | {cells} | {100 * curve['mean'][i]:.1f}% "
            f"[{100 * curve['low'][i]:.1f}, {100 * curve['high'][i]:.1f}] |"
        )
    return "\n".join(lines)


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
