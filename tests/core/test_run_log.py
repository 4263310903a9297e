"""Training logs (core/run_log.py): history.jsonl rows as training goes, TensorBoard scalars
when tensorboard is installed, and the trainers writing through it."""

import json

import pytest

from drivesim.core.run_log import RunLog, tensorboard_available


def scalars(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_rows_are_on_disk_as_they_are_logged(tmp_path):
    log = RunLog(tmp_path, "rl", tensorboard=False)
    log.log(1, {"update": 1, "loss": 0.5, "note": "x"})
    rows = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert rows == [{"update": 1, "loss": 0.5, "note": "x"}]  # flushed before close: a cut-off run keeps it
    log.close()
    assert not (tmp_path / "tensorboard").exists()


@pytest.mark.skipif(not tensorboard_available(), reason="tensorboard is not installed")
def test_numbers_go_to_tensorboard(tmp_path):
    with RunLog(tmp_path, "il") as log:
        for step in range(3):
            log.log(step, {"loss": 1.0 / (step + 1), "acc": float("nan"), "phase": "bc", "done": True})
    assert scalars(tmp_path / "tensorboard", "il/loss") == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert "il/acc" not in acc.Tags()["scalars"] and "il/done" not in acc.Tags()["scalars"]  # NaN and flags stay out
