"""Records written so that a crash at any instant leaves each file as it was or as it should be
(a temporary file, then a rename), and JSON-lines records read back with errors naming the line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RecordError(ValueError):
    """A line of a JSON-lines record that is not what it must be; names the file and line."""

    def __init__(self, message: str, path: Path, line: int):
        super().__init__(message)
        self.path, self.line = path, line


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a line that is not a JSON object is named with its file."""
    path = Path(path)
    records = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise RecordError(f"{str(path)!r} line {n} is not JSON: {err}", path, n) from None
        if not isinstance(record, dict):
            raise RecordError(
                f"{str(path)!r} line {n} is not a JSON object: {line[:80]!r}", path, n
            )
        records.append(record)
    return records
