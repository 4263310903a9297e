"""Training outputs: a foreign last.pt never runs code, a resume refuses other training scenarios,
`train rl` never overwrites a checkpoint silently, and a write that fails midway leaves the
previous checkpoint loadable (issue 14 items 1, 10, 11)."""

from __future__ import annotations

import errno

import pytest
import torch

from drivesim.core.checkpoint import CheckpointError, load_checkpoint
from drivesim.core.safe_io import OutputError
from drivesim.train.il import ILConfig, Interrupted, train_il
from drivesim.train.il_data import Demos
from drivesim.train.policy_net import PolicyNet, PolicyNetConfig, load_policy, save_policy
from tests.payloads import Touch, assert_payload_works

SUITE = """name: il-resume
seed: 0
duration: 2.0
groups:
  - map: straight
    count: 2
    map_params: {lanes: 2, lanes_back: 1}
    traffic: {density: 1.0}
    ego: {speed: 12}
"""


def _cfg(suite) -> ILConfig:
    return ILConfig(suite=str(suite), suite_repeat=1, epochs=2, dagger=0, dagger_epochs=1, eval_scenarios=0, hidden=8,
                    record_every=2, batch_size=32, val_fraction=0.0, start_fraction=0.0)  # the 2 drawn scenarios only


def _stop(state):
    raise Interrupted


def test_foreign_il_state_never_runs_code(tmp_path):
    assert_payload_works(tmp_path)
    marker = tmp_path / "ran"
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"state": Touch(marker), "net": {}, "opt": {}}, out / "last.pt")
    with pytest.raises(CheckpointError, match="last.pt.*not plain data") as err:
        train_il(ILConfig(suite="none", rare=1, rare_events=("hard-brake",)), out, progress=False)
    assert "weights_only" not in str(err.value) and not marker.exists()
    torch.save(torch.zeros(2), out / "last.pt")
    with pytest.raises(CheckpointError, match="last.pt: not a drivesim IL run state: it holds a Tensor"):
        train_il(ILConfig(suite="none", rare=1, rare_events=("hard-brake",)), out, progress=False)


def test_il_resume_refuses_other_scenarios_and_overwrite_starts_over(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        train_il(_cfg(suite), out, progress=False, on_epoch=_stop)
    state = load_checkpoint(out / "last.pt")["state"]
    assert len(state["scenario_hashes"]) == 2
    suite.write_text(SUITE.replace("speed: 12", "speed: 14"))  # same config, other scenario content
    with pytest.raises(ValueError, match=r"refusing to resume: the training scenarios differ.*2 changed"):
        train_il(_cfg(suite), out, progress=False)
    seen = []
    with pytest.raises(Interrupted):
        train_il(_cfg(suite), out, progress=False, overwrite=True, on_epoch=lambda s: (seen.append(len(s["curve"])), _stop(s)))
    assert seen == [1]  # started over: the first epoch, not the second


def _failing_save(monkeypatch):
    """torch.save that writes half a file and then hits a full disk."""
    real = torch.save

    def save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save)
    return real


def test_a_failed_policy_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    torch.manual_seed(0)
    path = save_policy(PolicyNet(PolicyNetConfig(hidden=8)), tmp_path / "p.pt", {"name": "first"})
    _failing_save(monkeypatch)
    with pytest.raises(OutputError, match="p.pt: No space left"):
        save_policy(PolicyNet(PolicyNetConfig(hidden=8)), path, {"name": "second"})
    monkeypatch.undo()
    assert load_policy(path).name == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.pt"]  # no temporary left behind


def test_a_failed_dataset_save_leaves_the_previous_file(tmp_path, monkeypatch):
    n = 3
    feats = {k: torch.zeros(n, 2) for k in ("agents", "agents_mask", "lanes", "lanes_mask", "route", "ego")}
    demos = Demos(feats, torch.zeros(n), torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                  torch.zeros(n, dtype=torch.long), ["s"])
    demos.save(tmp_path / "data.pt")
    _failing_save(monkeypatch)
    with pytest.raises(OutputError, match="data.pt"):
        demos.take(torch.tensor([0])).save(tmp_path / "data.pt")
    monkeypatch.undo()
    assert len(Demos.load(tmp_path / "data.pt")) == 3
    (tmp_path / "data.pt").write_bytes((tmp_path / "data.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="data.pt: not a readable IL dataset: corrupt or truncated"):
        Demos.load(tmp_path / "data.pt")


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write"):
        save_policy(PolicyNet(PolicyNetConfig(hidden=8)), blocker / "p.pt")
    with pytest.raises(OutputError, match="cannot write"):
        train_il(ILConfig(suite="none", rare=1, rare_events=("hard-brake",)), blocker / "run", progress=False)
