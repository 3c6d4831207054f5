"""Output paths checked before any work: a directory (or file) that can be made and written, not
under a plain file, and (for a campaign) not inside another campaign's directory."""

from __future__ import annotations

import tempfile
from pathlib import Path


class OutputPathError(ValueError):
    """An output path that cannot be written; the message names it and why."""


def check_output_dir(path: str | Path, what: str = "--out") -> Path:
    """`path` is a directory this process can write in, or one it can make; else OutputPathError."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {str(path)!r} is a file; expected a directory")
    _check_writable(path, what)
    return path


def check_output_file(path: str | Path, what: str = "-o") -> Path:
    """`path` is a file this process can (over)write, or make in a directory it can make."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputPathError(f"{what} {str(path)!r} is a directory; expected a file name")
    return check_can_create(path, what)


def check_can_create(path: str | Path, what: str) -> Path:
    """`path` can be made (or renamed into place): the directory above it can be written."""
    path = Path(path).expanduser()
    _check_writable(path.absolute().parent, what, path)
    return path


def enclosing_campaign(path: str | Path) -> Path | None:
    """The campaign directory (config.toml and episodes/) that `path` lies inside, if any."""
    for parent in Path(path).expanduser().absolute().parents:
        if (parent / "config.toml").is_file() and (parent / "episodes").is_dir():
            return parent
    return None


def _check_writable(directory: Path, what: str, target: Path | None = None) -> None:
    """The nearest existing directory at or above `directory` accepts a new file."""
    target = target or directory
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(
            f"{what} {str(target)!r}: {str(existing)!r} is a file, so nothing can be made under it"
        )
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".autodidact-write-check-"):
            pass
    except OSError as err:
        raise OutputPathError(
            f"{what} {str(target)!r}: cannot write in {str(existing)!r} ({err.strerror}); "
            "choose a directory you can write in"
        ) from None
