"""Import errors, and loading every file of a folder without one bad file stopping the rest."""

from __future__ import annotations

from pathlib import Path


class ImportDataError(ValueError):
    """A source file is malformed or unsupported; the message starts with the file's path."""


def load_each(path: Path, files: list[Path], load_one, what: str) -> tuple[list, list[str]]:
    """Load every file with `load_one`; a file that raises ImportDataError becomes an error line.
    Returns (scenarios, errors); raises ImportDataError when there is no file or none loads."""
    if not files:
        raise ImportDataError(f"{path}: no {what} found")
    out, errors = [], []
    for f in files:
        try:
            out.append(load_one(f))
        except ImportDataError as e:
            errors.append(str(e))
    if not out:
        raise ImportDataError(f"{path}: no scenario could be imported:\n" + "\n".join(errors))
    return out, errors
