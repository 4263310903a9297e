"""PPO's rows are the shared environment layer (sim/env.py): the gym adapter and `DrivingRows`
give the same states for the same trajectories bit for bit, a restarted row replays a fresh
row (its DriveReward memory too) while the others go on, and a row stops at the sub-step where
its episode ends (the bootstrap observation of a truncated row is its last one)."""

import torch

from drivesim.core.types import ControlMode
from drivesim.map import build_map
from drivesim.sim.gym_env import DriveVectorEnv
from drivesim.train.policy_net import PolicyNetConfig
from drivesim.train.ppo import DrivingRows, PPOConfig
from tests.helpers import make_scenario

Y = -1.8
K = 5  # simulation steps per decision
NET = PolicyNetConfig(hidden=8)


def scenarios(duration=4.0):
    road = build_map("straight", length=300.0, lanes=2, lanes_back=0)
    return [make_scenario(road, [{"x": 10, "y": Y, "speed": 10}, {"x": 35, "y": Y, "speed": 7}], duration=duration,
                          name="follow"),
            make_scenario(road, [{"x": 10, "y": Y, "speed": 12}, {"x": 30, "y": -5.4, "speed": 9},
                                 {"x": 60, "y": Y, "mode": ControlMode.STATIC}], duration=duration, name="parked"),
            make_scenario(road, [{"x": 10, "y": Y, "speed": 8}], duration=duration, name="free")]


def rows(scen=None) -> DrivingRows:
    return DrivingRows(scen or scenarios(), NET, PPOConfig(num_envs=3), tile=False)


def decision(env: DrivingRows, t: int):
    """A fixed vocabulary action of decision t [B]: (acceleration, lateral option index), context."""
    _, ctx = env.observe()
    accel = torch.tensor([1.0, -1.0, 0.5]) * (1 if t % 2 == 0 else -0.5)
    option = torch.tensor([0, min(1, ctx["targets"].shape[1] - 1), 0])
    return accel, option, ctx


def fields(state, row):
    return {k: v[row] for k, v in vars(state).items() if torch.is_tensor(v)}


def assert_row_equal(a, b, row_a, row_b=None):
    fa, fb = fields(a, row_a), fields(b, row_a if row_b is None else row_b)
    for k in fa:
        assert torch.equal(fa[k], fb[k]), k


def test_gym_env_and_ppo_rows_give_the_same_states_bit_for_bit():
    ppo = rows()
    vocab = NET.vocab
    gym = DriveVectorEnv(scenarios(), action="trajectory", horizon=vocab.horizon, traj_dt=vocab.plan_dt, replan_every=K)
    gym.reset(seed=0)
    moved = False
    for t in range(6):
        accel, option, ctx = decision(ppo, t)
        traj = ppo.plan(accel, option, ctx)
        _, _, term, trunc, _ = gym.step(traj.poses.numpy())
        out = ppo.step(accel, option, ctx, K)
        assert not (term.any() or trunc.any() or out["terminated"].any() or out["truncated"].any())
        for row in range(3):
            assert_row_equal(gym.state, ppo.state, row)
        moved = moved or not torch.equal(ppo.state.y[:, 0], ppo.env.initial.y[:, 0])
    assert moved and ppo.state.clock.tolist() == [30, 30, 30]


def test_a_restarted_ppo_row_replays_a_fresh_row_while_the_others_go_on():
    ref = rows()
    ref_out, ref_states = [], []
    for t in range(5):
        ref_out.append(ref.step(*decision(ref, t), K))
        ref_states.append(ref.state)
    env = rows()
    for t in range(2):
        env.step(*decision(env, t), K)
    env.restart(torch.tensor([True, False, False]))
    assert env.state.clock.tolist() == [0, 10, 10] and env.ep_return[0].item() == 0.0
    feats, _ = env.observe()
    for k, v in feats.items():
        assert torch.equal(v[0], env.init_feats[k][0]), k
    for m in range(3):
        accel, option, ctx = decision(env, m)
        ref_accel, ref_option, _ = decision(ref, m)
        # row 0 gets the fresh row's decision m, the others their own decision 2 + m
        accel[1:], option[1:] = decision(env, 2 + m)[0][1:], decision(env, 2 + m)[1][1:]
        out = env.step(accel, option, ctx, K)
        assert_row_equal(env.state, ref_states[m], 0)
        assert out["reward"][0].item() == ref_out[m]["reward"][0].item()  # DriveReward's memory restarted with the row
        for row in (1, 2):
            assert_row_equal(env.state, ref_states[2 + m], row)
            assert out["reward"][row].item() == ref_out[2 + m]["reward"][row].item()


def test_a_row_stops_at_the_sub_step_its_episode_ends():
    road = build_map("straight", length=300.0, lanes=1, lanes_back=0)
    short = make_scenario(road, [{"x": 10, "y": Y, "speed": 10}], duration=0.7, name="short")  # 7 steps
    env = rows([short] + scenarios()[:2])
    env.step(*decision(env, 0), K)
    out = env.step(*decision(env, 1), K)
    assert out["truncated"].tolist() == [True, False, False]
    assert env.state.clock.tolist() == [7, 10, 10]  # not simulated past its end: the bootstrap sees its last state
    assert env.ep_len.tolist() == [7, 10, 10]  # episode lengths in simulation steps
    env.restart(out["truncated"])
    assert env.state.clock.tolist() == [0, 10, 10] and env.ep_len[0].item() == 0


def test_rows_of_a_checkpoint_written_before_the_env_layer_still_load():
    env = rows()
    env.step(*decision(env, 0), K)
    new = env.state_dict()
    old = {"state": new["state"], "reward": new["reward"], "ep_return": new["episode_return"],
           "ep_len": torch.full((3,), K)}  # the rows' checkpoint format of train/ppo.py before sim/env.py
    a, b = rows(), rows()
    a.load_state_dict(new)
    b.load_state_dict(old)
    for t in (1, 2):
        out_a, out_b = a.step(*decision(a, t), K), b.step(*decision(b, t), K)
        assert torch.equal(out_a["reward"], out_b["reward"])
    for row in range(3):
        assert_row_equal(a.state, b.state, row)
    assert torch.equal(a.ep_return, b.ep_return) and not bool(b.env.done.any())
