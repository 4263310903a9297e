"""Writing files so that a kill or a full disk never leaves a truncated one.

Every artifact (results, cards, checkpoints, datasets) is written to a temporary file in the
same folder and renamed over the target: a reader sees the old file or the new one, never half
of one. A failed write (no space, no permission) raises `OutputError` naming the file and the
reason, and leaves the previous file untouched.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Callable


class OutputError(OSError):
    """An output file could not be written; the message names the file and the reason."""


def _explain(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"cannot write {path}: {reason}"


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
    """`with atomic_open(path, "w") as f:` writes to a temporary file that replaces `path` only
    when the block ends without an exception (modes "w" and "wb")."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(_explain(path, exc)) from exc
    ok = False
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        ok = True
    except OSError as exc:
        raise OutputError(_explain(path, exc)) from exc
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_save(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Atomically write a file produced by `write(fileobj)` (e.g. `lambda f: torch.save(obj, f)`,
    `lambda f: df.to_csv(f)`)."""
    with atomic_open(path, "wb") as fh:
        write(fh)
    return Path(path)


def atomic_torch_save(obj, path: str | Path) -> Path:
    import torch

    return atomic_save(path, lambda fh: torch.save(obj, fh))


def file_name(name: str) -> str:
    """A scenario or policy name as one file name (suite names carry '/')."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
