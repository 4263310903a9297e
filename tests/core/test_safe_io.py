"""Atomic writes: a failed write leaves the previous file whole and names the file."""

import pytest
import torch

from drivesim.core.safe_io import OutputError, atomic_open, atomic_torch_save, atomic_write_text


def test_failed_write_keeps_previous_file(tmp_path):
    target = tmp_path / "results.jsonl"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("half of a new fi")
            raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]  # no temporary left behind


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write .*a_file"):
        atomic_write_text(blocker / "out.json", "{}")


def test_torch_save_round_trip(tmp_path):
    path = atomic_torch_save({"w": torch.ones(3)}, tmp_path / "ck.pt")
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
