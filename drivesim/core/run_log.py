"""A training run's log: `history.jsonl` (one JSON row per step, appended and flushed as training
goes, so a run that is cut off keeps its rows) and, when the optional `tensorboard` package is
installed, the same numbers as TensorBoard scalars under `OUT/tensorboard` (`tensorboard --logdir
OUT/tensorboard`). Every trainer writes through it: `train il`, `train rl`, `train traffic`,
`refiner train`."""

from __future__ import annotations

import json
import math
from pathlib import Path


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class RunLog:
    """log(step, row): append row (a dict) to history.jsonl, and its finite numbers to TensorBoard
    as `<prefix>/<key>` at `step`. `tensorboard=None` uses it when installed; False never."""

    def __init__(self, out: str | Path, prefix: str = "train", tensorboard: bool | None = None, append: bool = False):
        self.out, self.prefix = Path(out), prefix
        self.out.mkdir(parents=True, exist_ok=True)
        self._file = open(self.out / "history.jsonl", "a" if append else "w")  # noqa: SIM115 - closed in close()
        self.writer = None
        if tensorboard or (tensorboard is None and tensorboard_available()):
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"))

    def log(self, step: int, row: dict) -> None:
        self._file.write(json.dumps(row, default=float) + "\n")
        self._file.flush()
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(f"{self.prefix}/{key}", value, step)

    def close(self) -> None:
        self._file.close()
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
