"""The object colours every task draws from (`envs.tabletop.COLORS` re-exports them for tasks)."""

from __future__ import annotations

COLORS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.9, 0.12, 0.1, 1.0),
    "green": (0.1, 0.72, 0.15, 1.0),
    "blue": (0.12, 0.3, 0.95, 1.0),
    "yellow": (0.95, 0.85, 0.1, 1.0),
}
"""The object colours, chosen to stay distinct at 64x64."""
