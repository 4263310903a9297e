"""The shared batched environment (sim/env.py): a restarted row replays a fresh env bit for bit
while the other rows go on, a row stops at the sub-step where it ends and waits for a restart,
state_dict continues exactly, bad trajectories name the scenario, and the environment layer
reaches into no other module's private members."""

import ast
import math
import pathlib

import pytest
import torch

from drivesim.core.scenario import ScenarioBatch
from drivesim.core.types import ControlMode
from drivesim.map import build_map
from drivesim.sim.env import DriveEnv, RouteProgressReward
from drivesim.sim.simulator import ActionError
from drivesim.sim.trajectory import Trajectory
from tests.helpers import make_scenario

Y = -1.8
ROOT = pathlib.Path(__file__).resolve().parents[2]


def batch():
    road = build_map("straight", length=300.0, lanes=2, lanes_back=0)
    return ScenarioBatch.build([
        make_scenario(road, [{"x": 5, "y": Y, "speed": 10}, {"x": 30, "y": Y, "speed": 6}], duration=3, name="follow"),
        make_scenario(road, [{"x": 5, "y": Y, "speed": 12}, {"x": 25, "y": Y, "speed": 4}, {"x": 20, "y": 1.8, "speed": 9}],
                      duration=3, name="slow_leader"),
        make_scenario(road, [{"x": 5, "y": Y, "speed": 8}, {"x": 18, "y": Y, "mode": ControlMode.STATIC}], duration=3,
                      name="blocked")])


def actions(state) -> torch.Tensor:
    """A fixed control of each row's own clock [B, 2] (so a restarted row gets a fresh row's)."""
    t = state.row_step.double()
    b = torch.arange(len(t), dtype=torch.float64)
    return torch.stack([1.5 * torch.sin(0.3 * t + b), 0.03 * torch.cos(0.2 * t + b)], -1).float()


def fields(state, row: int) -> dict:
    return {k: v[row] for k, v in vars(state).items() if torch.is_tensor(v)}


def assert_rows_equal(a, b, row_a: int, row_b: int | None = None):
    fa, fb = fields(a, row_a), fields(b, row_a if row_b is None else row_b)
    for k in fa:
        assert torch.equal(fa[k], fb[k]), k


def run(env, n):
    states, rewards = [], []
    for _ in range(n):
        rewards.append(env.step(actions(env.state)).reward)
        states.append(env.state)
    return states, rewards


def test_a_restarted_row_replays_a_fresh_env_bit_for_bit_while_the_others_go_on():
    ref = DriveEnv(batch())
    ref_states, ref_rewards = run(ref, 12)
    assert not bool(ref.done[:2].any())  # rows 0 and 1 run the whole window (row 2 hits the parked car)
    env = DriveEnv(batch())
    run(env, 5)
    env.restart(torch.tensor([False, True, False]))
    assert env.state.clock.tolist() == [5, 0, 5] and not bool(env.done[1])
    assert env.episode_return[1].item() == 0.0 and env.episode_return[0].item() != 0.0
    states, rewards = run(env, 7)
    for m in range(7):
        assert_rows_equal(states[m], ref_states[m], 1)  # the restarted row: a fresh env's steps ...
        assert rewards[m][1].item() == ref_rewards[m][1].item()  # ... and rewards (its reward memory restarted)
        assert_rows_equal(states[m], ref_states[5 + m], 0)  # the other rows go on as if nothing happened
    assert states[-1].clock.tolist()[:2] == [12, 7]


def test_a_row_stops_where_it_ends_and_waits_for_a_restart():
    env = DriveEnv(batch())
    hit = None
    for n in range(25):
        out = env.step(actions(env.state))
        if out.terminated[2]:
            hit = n
            break
    assert hit is not None and out.events["collision"][2] and out.reward[2].item() == 0.0 and out.steps[2].item() == 1
    where = fields(env.state, 2)
    out = env.step(actions(env.state))  # a done row is not simulated any further and earns nothing
    assert out.steps.tolist() == [1, 1, 0] and out.reward[2].item() == 0.0 and not out.terminated[2]
    for k, v in where.items():
        assert torch.equal(getattr(env.state, k)[2], v), k
    env.restart(env.done)
    assert env.state.clock[2].item() == 0 and env.state.x[2, 0].item() == 5.0
    out = env.step(actions(env.state))
    assert out.steps.tolist() == [1, 1, 1]


def test_a_trajectory_step_stops_a_row_inside_its_sub_steps_at_the_duration():
    road = build_map("straight", length=300.0, lanes=1, lanes_back=0)
    short = make_scenario(road, [{"x": 5, "y": Y, "speed": 10}], duration=0.7, name="short")
    long = make_scenario(road, [{"x": 5, "y": Y, "speed": 10}], duration=3, name="long")
    env = DriveEnv(ScenarioBatch.build([short, long]))
    x = 10.0 * 0.5 * torch.arange(1, 9, dtype=torch.float32)
    traj = Trajectory(torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], -1).expand(2, 8, 3).clone(), 0.5)
    first = env.step_trajectory(traj, 5)
    second = env.step_trajectory(traj, 5)
    assert first.steps.tolist() == [5, 5] and not first.truncated.any()
    assert second.steps.tolist() == [2, 5] and second.truncated.tolist() == [True, False]  # 0.7 s = 7 steps
    assert env.state.clock.tolist() == [7, 10] and env.done.tolist() == [True, False]
    assert second.reward[0].item() == pytest.approx(2 / 5 * second.reward[1].item(), rel=0.02)


def test_state_dict_continues_exactly():
    env = DriveEnv(batch())
    run(env, 4)
    saved = env.state_dict()
    tail, tail_rewards = run(env, 6)
    other = DriveEnv(batch())
    other.load_state_dict(saved)
    again, again_rewards = run(other, 6)
    for a, b, ra, rb in zip(tail, again, tail_rewards, again_rewards):
        for row in range(3):
            assert_rows_equal(a, b, row)
        assert torch.equal(ra, rb)


def test_bad_trajectory_names_the_scenario_and_step():
    env = DriveEnv(batch())
    run(env, 2)
    poses = torch.zeros(3, 8, 3)
    poses[:, :, 0] = torch.arange(1, 9) * 5.0
    poses[2, 4, 1] = math.nan
    with pytest.raises(ActionError, match="scenario 'blocked', step 2: non-finite trajectory pose 4"):
        env.step_trajectory(Trajectory(poses, 0.5), 5)
    with pytest.raises(ActionError, match="shorter than the re-plan interval"):
        env.step_trajectory(Trajectory(poses[:, :2].nan_to_num(), 0.1), 5)


def test_the_default_reward_is_route_progress():
    env = DriveEnv(batch())
    assert isinstance(env.reward, RouteProgressReward)
    out = env.step(torch.zeros(3, 2))
    assert out.reward[0].item() == pytest.approx(10 * 0.1 / (25.0 * 0.1), abs=0.05)


ENV_LAYER = ["drivesim/sim/env.py", "drivesim/sim/gym_env.py", "drivesim/train/ppo.py", "drivesim/train/ppo_checkpoint.py",
             "drivesim/distributed/ray_backend.py"]


@pytest.mark.parametrize("path", ENV_LAYER)
def test_the_environment_layer_reaches_into_no_private_member(path):
    """No `obj._name` on anything but self/cls (e.g. the PPO rows once wrote `Simulator._frenet`)."""
    tree = ast.parse((ROOT / path).read_text())
    reaches = [f"line {n.lineno}: .{n.attr}" for n in ast.walk(tree)
               if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
               and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"))]
    assert not reaches, f"{path}: {reaches}"
