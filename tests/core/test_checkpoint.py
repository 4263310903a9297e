"""core.checkpoint: plain-data torch loading whose errors name the file and never advise
`weights_only=False` (issue 14 items 1, 3)."""

import pickle

import pytest
import torch

from drivesim.core.checkpoint import (CheckpointError, check_finite, describe_load_error, expect_dict, load_checkpoint,
                                      tensors_sha256)
from tests.payloads import Touch, assert_payload_works


def test_plain_data_loads(tmp_path):
    torch.save({"w": torch.ones(2), "cfg": {"a": [1, 2.5, "x"]}}, tmp_path / "ok.pt")
    blob = load_checkpoint(tmp_path / "ok.pt")
    assert torch.equal(blob["w"], torch.ones(2)) and blob["cfg"] == {"a": [1, 2.5, "x"]}


def test_every_failure_names_the_file_and_never_advises_unsafe_loading(tmp_path):
    assert_payload_works(tmp_path)
    marker = tmp_path / "ran"
    torch.save({"x": Touch(marker)}, tmp_path / "crafted.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x02not a checkpoint at all")
    torch.save({"w": torch.ones(1000)}, tmp_path / "cut.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "cut.pt").read_bytes()[:700])
    (tmp_path / "dir.pt").mkdir()
    cases = {"crafted.pt": "not plain data", "garbage.pt": "not a readable test checkpoint", "cut.pt": "corrupt or truncated",
             "dir.pt": "a folder, not a test checkpoint file", "missing.pt": "no such file"}
    for name, match in cases.items():
        with pytest.raises(CheckpointError, match=match) as err:
            load_checkpoint(tmp_path / name, "test checkpoint")
        msg = str(err.value)
        assert str(tmp_path / name) in msg and "weights_only" not in msg and "trust" not in msg, msg
    assert not marker.exists()


def test_torch_advice_is_dropped_from_any_message():
    advice = pickle.UnpicklingError("Weights only load failed. Re-running `torch.load` with `weights_only` set to "
                                    "`False` will likely succeed.\n\tWeightsUnpickler error: Unsupported operand 91")
    reason = describe_load_error(advice)
    assert "weights_only" not in reason and "False" not in reason and "operand 91" in reason


def test_expect_dict_and_check_finite(tmp_path):
    with pytest.raises(CheckpointError, match="f.pt: not a drivesim thing: it holds a list"):
        expect_dict([1], tmp_path / "f.pt", "thing")
    with pytest.raises(CheckpointError, match=r"no \['b'\]"):
        expect_dict({"a": 1}, tmp_path / "f.pt", "thing", ("a", "b"))
    with pytest.raises(CheckpointError, match=r"NaN or infinite weights in \['w'\]"):
        check_finite({"w": torch.tensor([1.0, float("inf")]), "n": torch.tensor([1])}, "f.pt")
    with pytest.raises(CheckpointError, match=r"\['s'\] are not tensors"):
        check_finite({"s": "text"}, "f.pt")
    assert tensors_sha256({"a": torch.ones(2)}) != tensors_sha256({"a": torch.zeros(2)})
