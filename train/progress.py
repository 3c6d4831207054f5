"""Progress bars for collection and training: tqdm on a terminal, silent elsewhere."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm


@contextmanager
def progress_bar(total: int, desc: str) -> Iterator[tqdm]:
    """A tqdm bar of `total` units; disabled when stderr is not a terminal (logs stay clean)."""
    bar = tqdm(
        total=total, desc=desc, leave=False, dynamic_ncols=True, disable=not sys.stderr.isatty()
    )
    try:
        yield bar
    finally:
        bar.close()
