"""Naming a policy (train/policies.py): checkpoints from anywhere, user classes from the working
directory or a file, constructor arguments, and the documented example of docs/policies.md."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from drivesim.core.scenario import ScenarioBatch
from drivesim.sim.rollout import rollout
from drivesim.io.suite import load_suite_scenarios
from drivesim.train.policies import PROJECT_POLICIES, PolicySpecError, make_policy, split_specs

DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"
POLICY = '''
class Slow:
    def __init__(self, speed=3.0, label="slow"):
        self.name, self.speed = label, speed

    def reset(self, batch):
        pass

    def act(self, obs):
        import torch
        return torch.zeros(obs.batch_size, 2)
'''


def test_a_module_in_the_working_directory_is_found(tmp_path, monkeypatch):
    (tmp_path / "my_slow_policies.py").write_text(POLICY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    policy = make_policy("my_slow_policies:Slow")
    assert policy.name == "slow" and policy.speed == 3.0


def test_a_file_anywhere_with_constructor_arguments(tmp_path):
    (tmp_path / "pol.py").write_text(POLICY)
    policy = make_policy(f"{tmp_path / 'pol.py'}:Slow(speed=1.5, label='x')")
    assert (policy.name, policy.speed) == ("x", 1.5)
    policy = make_policy(f"{tmp_path / 'pol.py'}:Slow", {"speed": 2.5})
    assert policy.speed == 2.5


@pytest.mark.parametrize("spec, message", [
    ("pol.py:Slow(1.5)", "name=literal pairs"),
    ("pol.py:Slow(speed=open('x'))", "name=literal pairs"),
    ("pol.py:Slow(wheels=4)", "cannot create policy .* with arguments {'wheels': 4}"),
    ("pol.py:Fast", "cannot load policy .*Fast"),
    ("missing.py:Slow", "no such file"),
])
def test_bad_user_specs_are_clear_errors(tmp_path, monkeypatch, spec, message):
    (tmp_path / "pol.py").write_text(POLICY)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PolicySpecError, match=message):
        make_policy(spec)


def test_project_checkpoints_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (PROJECT_POLICIES / "il_base.pt").is_file()
    assert make_policy("policies/il_base.pt").name == make_policy("il_base.pt").name
    with pytest.raises(ValueError, match="no such file"):
        make_policy("policies/none_such.pt")


def test_spec_lists_ignore_spaces_and_keep_argument_commas():
    assert split_specs("idm, pdm_expert ,") == ["idm", "pdm_expert"]
    assert split_specs("a.py:C(x=1, y=2), idm") == ["a.py:C(x=1, y=2)", "idm"]
    assert make_policy(" idm ").name == "idm"


def test_the_documented_example_runs_from_a_temporary_folder(tmp_path, monkeypatch):
    code = re.search(r"Save this as `cautious.py`.*?```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    (tmp_path / "cautious.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    policy = make_policy("cautious.py:Cautious(target_speed=6.0)")
    assert policy.name == "cautious_6"
    batch = ScenarioBatch.build(load_suite_scenarios("tiny", limit=2, progress=False)[2])
    result = rollout(batch, policy)
    assert np.isfinite(result.metrics["pdms"]).all()
    assert (result.metrics["progress"] > 10).all()  # it drives: 6 m/s for the scenarios' duration
