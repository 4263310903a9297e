"""Reading torch checkpoints from outside: plain data only, errors that name the file.

`load_checkpoint(path, what)` is `torch.load(path, weights_only=True)`: tensors, numbers, strings,
lists, tuples and dicts, never a pickled object whose loading could run code. Every failure is a
`CheckpointError` (a ValueError) naming the file and what is wrong: missing or unreadable, truncated
or corrupt (a bit flip shows up as a zip or pickle error), or naming a global that is not plain
data. torch's own message for the last case advises re-running with `weights_only=False`; that
advice is never passed on (it would run the file's code), only the global it refused.

`check_finite(state, path, what)` refuses weights with NaN or infinite values, and
`tensors_sha256(state)` is the hash cards record for a state dict.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def describe_load_error(exc: BaseException) -> str:
    """A short reason for a torch.load failure, without torch's advice to load unsafely."""
    text = str(exc)
    found = _GLOBAL.search(text)
    if found:
        return (f"it names {found.group(1)}, which is not plain data (tensors, numbers, strings, lists, dicts); "
                "loading it could run code, so it is refused")
    if "weights_only" in text.lower() or "Weights only load failed" in text:
        inner = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else ""
        inner = inner.strip().split("\n", 1)[0].split(". ", 1)[0]
        return f"not a plain-data checkpoint ({inner})" if inner and "weights_only" not in inner else \
            "not a plain-data checkpoint"
    first = text.strip().split("\n", 1)[0]
    first = first.split(". This is an internal", 1)[0]  # miniz's advice to the reader is noise here
    return f"corrupt or truncated file ({type(exc).__name__}: {first[:200]})"


def load_checkpoint(path, what: str = "checkpoint", map_location="cpu"):
    """The plain data in a torch file (`torch.load(weights_only=True)`); any failure is a CheckpointError."""
    import torch

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a {what} file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no {what} (no such file)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    except Exception as exc:  # a corrupt file raises almost anything: zip, pickle, EOF, struct, unicode errors
        raise CheckpointError(f"{path}: not a readable {what}: {describe_load_error(exc)}") from None


def expect_dict(blob, path, what: str, keys=()) -> dict:
    """`blob` as a dict holding `keys`, else a CheckpointError naming the file and what it holds."""
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path}: not a drivesim {what}: it holds a {type(blob).__name__}, not a dict")
    missing = [k for k in keys if k not in blob]
    if missing:
        raise CheckpointError(f"{path}: not a drivesim {what}: no {missing} (it has {sorted(map(str, blob))[:8]})")
    return blob


def check_finite(state: dict, path, what: str = "checkpoint") -> None:
    """Refuse a state dict with a non-tensor entry or a NaN / infinite weight (naming the tensors)."""
    import torch

    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: {what} weights {bad[:5]} are not tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: {what} has NaN or infinite weights in {bad[:5]}"
                              + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))


def tensors_sha256(state: dict) -> str:
    """sha256 over the sorted names and the raw bytes of a state dict's tensors (CPU, contiguous)."""
    digest = hashlib.sha256()
    for k in sorted(state):
        digest.update(k.encode() + state[k].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


__all__ = ["CheckpointError", "load_checkpoint", "describe_load_error", "expect_dict", "check_finite", "tensors_sha256"]
