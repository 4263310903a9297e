"""The learned driving policy over a trajectory vocabulary: the ego-centric vector observation
in, scores of longitudinal profiles x lateral options out (decoupled heads, as RAD does: 12
accelerations x 5 lateral options = 60 trajectories), plus a value head for RL.

`PolicyNet` encodes agents and lane pieces with shared MLPs and masked max-pooling, the route and
the ego state with MLPs; a trunk feeds the acceleration logits [B, K], the lateral logits [B, L]
and the value [B]. `NetPolicy` wraps a net as a drivesim policy: it decodes a decision and returns
the decision's trajectory (train/vocabulary.py), which the simulator's controller tracks.

Decoding (`decode="mean"`, the default): the acceleration is the expected value of the
acceleration head and the lateral option its most probable allowed one. Why the mean: an
imitation head whose classes are accelerations puts its top bin on the most common one; the
expert brakes in a few per cent of states, so the top bin of a braking state is still a mild
one (the previous checkpoint decoded by the top bin never went below -2 m/s^2 and rear-ended
stopped cars), while the mean moves with the probability mass on braking. Trained with two-hot
targets (the expert's acceleration split between its two neighbouring bins so that their mean
is that acceleration, `two_hot`), the mean is the clone's estimate of the expert's acceleration.
`decode="argmax"` keeps the top bin (for comparison); `greedy=False` samples both heads (RL).

Checkpoints hold the weights, the config and a card (layout, provenance); loading one with another
observation, vocabulary or format is an error that says what differs. Checkpoints load as plain
data (`weights_only`); a corrupt file, a card that is not a dict, NaN weights, weights that do not
fit the card's network or whose hash differs from the card's `weights_sha256` are
`CheckpointError`s naming the file.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from drivesim.core.checkpoint import CheckpointError, check_finite, expect_dict, load_checkpoint, tensors_sha256
from drivesim.core.config import apply_overrides, config_to_dict, tuples_from_json
from drivesim.core.safe_io import atomic_torch_save, atomic_write_text
from drivesim.map.bank import CHUNK
from drivesim.sim.observation import AGENT_FEATURES, EGO_FEATURES, LANE_FEATURES, Observation, ObservationConfig
from drivesim.sim.trajectory import Trajectory, TrajectoryTracker
from drivesim.train.vocabulary import VocabularyConfig, lateral_targets, plan, to_ego_poses

ACCEL_BINS = (-8.0, -6.0, -4.5, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.5)  # m/s^2
FORMAT = "drivesim-policy/2"  # /1: acceleration-only checkpoints (before the vocabulary)
DECODES = ("mean", "argmax")


@dataclass(frozen=True)
class PolicyNetConfig:
    hidden: int = 128
    accel_bins: tuple = ACCEL_BINS
    vocab: VocabularyConfig = field(default_factory=VocabularyConfig)
    decode: str = "mean"  # greedy acceleration: the head's expected value ("mean") or its top bin ("argmax")
    # the ego's last applied acceleration as an input: off, because behaviour cloning then copies it (the
    # expert's acceleration changes slowly, so the last one predicts it) and the clone never brakes in time
    # (the copycat problem, de Haan et al. 2019): 0.50 -> 0.91 success on fresh nominal scenarios after BC
    last_accel: bool = False
    obs: ObservationConfig = field(default_factory=ObservationConfig)

    def validate_config(self, where: str = "policy") -> None:
        from drivesim.core.config import ConfigError

        if self.decode not in DECODES:
            raise ConfigError(f"{where}.decode: got {self.decode!r}; allowed: {', '.join(DECODES)}")
        if self.hidden < 1 or len(self.accel_bins) < 2 or list(self.accel_bins) != sorted(self.accel_bins):
            raise ConfigError(f"{where}: hidden >= 1 and at least two increasing accel_bins needed")
        self.vocab.validate_config(f"{where}.vocab")


def layout(cfg: PolicyNetConfig) -> dict:
    """What a checkpoint must agree on with the code that loads it."""
    return {"agent_features": AGENT_FEATURES, "lane_features": LANE_FEATURES, "ego_features": EGO_FEATURES,
            "chunk": CHUNK, "obs": config_to_dict(cfg.obs), "accel_bins": list(cfg.accel_bins), "last_accel": cfg.last_accel,
            "lateral": list(cfg.vocab.lateral)}


def _mlp(n_in: int, h: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())


def features(obs: Observation) -> dict[str, torch.Tensor]:
    """Observation tensors scaled to O(1) for the net."""
    agents = obs.agents.clone()
    agents[..., :2] /= 50.0
    agents[..., 4:6] /= 20.0
    agents[..., 6:8] /= 5.0
    lanes = torch.cat([obs.lanes.flatten(-2) / 50.0, obs.lane_attrs / torch.tensor([20.0, 4.0, 1.0, 1.0])], -1)
    ego = obs.ego / torch.tensor([20.0, 4.0, 0.5, 20.0, 2.0, 0.5, 100.0, 200.0])
    return {"agents": agents, "agents_mask": obs.agents_mask, "lanes": lanes, "lanes_mask": obs.lanes_mask,
            "route": obs.route.flatten(1) / 50.0, "ego": ego}


class PolicyNet(nn.Module):
    def __init__(self, cfg: PolicyNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or PolicyNetConfig()
        h = cfg.hidden
        self.agent_enc = _mlp(AGENT_FEATURES, h)
        self.lane_enc = _mlp(CHUNK * 2 + LANE_FEATURES, h)
        self.route_enc = _mlp(cfg.obs.route_points * 2, h)
        self.ego_enc = _mlp(EGO_FEATURES, h)
        self.trunk = _mlp(4 * h, h)
        self.pi = nn.Linear(h, len(cfg.accel_bins))
        self.lat = nn.Linear(h, len(cfg.vocab.lateral))
        self.v = nn.Linear(h, 1)

    features = staticmethod(features)  # what the net reads of an Observation (a camera net reads other things)

    @staticmethod
    def _pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(~mask.unsqueeze(-1), -1e4).amax(dim=1).clamp(min=0.0)  # empty sets pool to 0

    def forward(self, f: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(acceleration logits [B, K], lateral logits [B, L], value [B]) from `features(obs)`;
        lateral options not allowed (`f["lat_mask"]`, when given) get -inf-like logits."""
        ego = f["ego"]
        if not self.cfg.last_accel:
            ego = torch.cat([ego[:, :1], torch.zeros_like(ego[:, 1:2]), ego[:, 2:]], -1)  # EGO_FEATURES[1]: accel
        z = torch.cat([self._pool(self.agent_enc(f["agents"]), f["agents_mask"]),
                       self._pool(self.lane_enc(f["lanes"]), f["lanes_mask"]),
                       self.route_enc(f["route"]), self.ego_enc(ego)], -1)
        z = self.trunk(z)
        lat = self.lat(z)
        if "lat_mask" in f:
            lat = lat.masked_fill(~f["lat_mask"], -1e4)
        return self.pi(z), lat, self.v(z).squeeze(-1)


def expected_accel(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """[B] the acceleration head's expected value."""
    return (torch.softmax(logits, -1) * bins.to(logits.device)).sum(-1)


def two_hot(accel: torch.Tensor, bins) -> torch.Tensor:
    """[N, K] targets: each acceleration split between its two neighbouring bins so that the
    targets' mean is the acceleration (clamped to the bins' range)."""
    bins = torch.as_tensor(bins, dtype=accel.dtype, device=accel.device)
    a = accel.clamp(float(bins[0]), float(bins[-1]))
    hi = torch.searchsorted(bins, a.contiguous()).clamp(1, len(bins) - 1)
    lo = hi - 1
    w = ((a - bins[lo]) / (bins[hi] - bins[lo])).clamp(0, 1)
    out = torch.zeros(len(a), len(bins), dtype=accel.dtype, device=accel.device)
    out.scatter_(1, lo.unsqueeze(1), (1 - w).unsqueeze(1))
    out.scatter_add_(1, hi.unsqueeze(1), w.unsqueeze(1))
    return out


class NetPolicy:
    """A PolicyNet as a drivesim policy over its trajectory vocabulary. `decide` scores the
    vocabulary and picks (acceleration, lateral option): greedy by the config's `decode`, or
    sampled from both heads with `generator` at `temperature`; `act` returns the decision's plan
    as a `Trajectory` (ego frame), which the simulator's controller tracks until the next
    decision; `controls` the controller's first (accel, steer) on it (for callers that step the
    simulator themselves, e.g. DAgger)."""

    def __init__(self, net: PolicyNet, name: str = "net", greedy: bool = True, temperature: float = 1.0,
                 generator: torch.Generator | None = None, policy_every: int | None = None):
        self.net, self.name, self.greedy, self.temperature, self.generator = net, name, greedy, temperature, generator
        self.policy_every = policy_every  # simulation steps per decision it was trained at (evaluate uses it); None: any
        self.bins = torch.tensor(net.cfg.accel_bins)

    def reset(self, batch) -> None:
        pass

    @torch.no_grad()
    def decide(self, obs: Observation) -> dict:
        """{accel [B], option [B] (index into cfg.vocab.lateral), target [B] m, d0 [B] m, feats}."""
        d0, targets, allowed = lateral_targets(obs, self.net.cfg.vocab)
        f = self.net.features(obs)
        f["lat_mask"] = allowed
        lon, lat, _ = self.net(f)
        bins = self.bins.to(lon.device)
        if self.greedy:
            accel = expected_accel(lon, bins) if self.net.cfg.decode == "mean" else bins[lon.argmax(-1)]
            option = lat.argmax(-1)
        else:
            pick = lambda z: torch.multinomial(torch.softmax(z / self.temperature, -1), 1, generator=self.generator).squeeze(-1)
            accel, option = bins[pick(lon)], pick(lat)
        return {"accel": accel, "option": option, "target": targets.gather(1, option.unsqueeze(1)).squeeze(1), "d0": d0,
                "feats": f}

    def plan(self, obs: Observation, decision: dict | None = None) -> dict:
        d = decision or self.decide(obs)
        return plan(obs, d["accel"], d["target"], d["d0"], self.net.cfg.vocab)

    def trajectory(self, obs: Observation, decision: dict | None = None) -> Trajectory:
        """The decision's plan as ego-frame poses [B, T, 3] every `vocab.plan_dt` s."""
        poses = to_ego_poses(self.plan(obs, decision), obs.state.xy[:, 0], obs.state.yaw[:, 0])
        return Trajectory(poses, self.net.cfg.vocab.plan_dt)

    @torch.no_grad()
    def act(self, obs: Observation) -> Trajectory:
        return self.trajectory(obs)

    @torch.no_grad()
    def controls(self, obs: Observation) -> torch.Tensor:
        """[B, 2] (accel, steer): the tracker's first step on the decision's plan."""
        tracker = TrajectoryTracker()
        tracker.plan(self.trajectory(obs), obs.state)
        return tracker.act(obs.state, obs.batch.dt)


def accel_to_bin(accel: torch.Tensor, bins) -> torch.Tensor:
    """Index of the nearest acceleration bin (the imitation target)."""
    return (accel.unsqueeze(-1) - torch.as_tensor(bins, dtype=accel.dtype, device=accel.device)).abs().argmin(-1)


def save_policy(net: PolicyNet, path, card: dict | None = None) -> Path:
    """Weights + config + card (layout, provenance) in one file; the card gets the weights' hash.
    Both the .pt and the .json card are written atomically (a kill leaves the previous ones)."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    card = {"format": FORMAT, **(card or {}), "layout": layout(net.cfg), "config": config_to_dict(net.cfg),
            "weights_sha256": tensors_sha256(state)}
    atomic_torch_save({"state_dict": state, "card": card}, path)
    atomic_write_text(path.with_suffix(".json"), json.dumps(card, indent=2, default=str))
    return path


def read_checkpoint(path, formats: tuple[str, ...] = (FORMAT,), card_keys=("config", "layout")) -> tuple[dict, dict]:
    """(state_dict, card) of a policy checkpoint, checked: a dict with a dict card of one of
    `formats` holding dicts `card_keys`, a state dict of finite tensors whose hash matches the
    card's `weights_sha256` (a checkpoint without one loads with a warning). Anything else is a
    CheckpointError naming the file. (train/camera_net.py reads camera policies with it too.)"""
    blob = expect_dict(load_checkpoint(path, "drivesim policy checkpoint"), path, "policy checkpoint", ("state_dict", "card"))
    card, state = blob["card"], blob["state_dict"]
    if not isinstance(card, dict):
        raise CheckpointError(f"{path}: the card is a {type(card).__name__}, not a dict")
    if card.get("format") not in formats:
        old = " (an acceleration-only policy from before the trajectory vocabulary: retrain it, e.g. `drivesim train il`)" \
            if card.get("format") == "drivesim-policy/1" else ""
        raise CheckpointError(f"{path}: format {card.get('format')!r}, expected {' or '.join(map(repr, formats))}{old}")
    for key in card_keys:
        if not isinstance(card.get(key), dict):
            raise CheckpointError(f"{path}: the card's {key!r} is a {type(card.get(key)).__name__}, not a dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: state_dict is a {type(state).__name__}, not a dict of tensors")
    check_finite(state, path, "policy checkpoint")
    want = card.get("weights_sha256")
    if want is None:
        warnings.warn(f"{path}: the card has no weights_sha256; the weights cannot be checked", stacklevel=3)
    elif tensors_sha256(state) != want:
        raise CheckpointError(f"{path}: the weights do not match the card's weights_sha256 ({str(want)[:16]}...): "
                              "the file was corrupted or modified")
    return state, card


def _fit(net: PolicyNet, state: dict, path) -> None:
    """Load `state` into `net`, naming missing, unexpected and mis-shaped tensors instead of torch's traceback."""
    mine = net.state_dict()
    missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(mine[k].shape)})" for k in sorted(set(mine) & set(state))
              if state[k].shape != mine[k].shape]
    if missing or extra or shapes:
        raise CheckpointError(f"{path}: the weights do not fit the network its card describes:"
                              + (f" missing {missing[:5]};" if missing else "") + (f" unexpected {extra[:5]};" if extra else "")
                              + (f" wrong shapes {shapes[:5]}" if shapes else ""))
    net.load_state_dict(state)


def load_policy(path, name: str | None = None, expect: PolicyNetConfig | None = None, **kwargs) -> NetPolicy:
    """A NetPolicy from a checkpoint; a checkpoint of another layout is a clear error. With
    `expect`, its layout must also match that config's (e.g. the acceleration bins a trainer uses)."""
    path = Path(path)
    return policy_from_checkpoint(path, *read_checkpoint(path), name=name, expect=expect, **kwargs)


def policy_from_checkpoint(path, state: dict, card: dict, name: str | None = None, expect: PolicyNetConfig | None = None,
                           **kwargs) -> NetPolicy:
    """The NetPolicy of a checked checkpoint's (state, card) (`read_checkpoint`); see `load_policy`."""
    try:
        cfg = apply_overrides(PolicyNetConfig(), tuples_from_json(card["config"]), where=f"{path}: policy config")
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: the card's config is not a PolicyNetConfig ({exc})") from None
    mine = layout(cfg)
    diff = [k for k in mine if json.dumps(mine[k], sort_keys=True) != json.dumps(card["layout"].get(k), sort_keys=True)]
    if diff:
        raise CheckpointError(f"{path}: checkpoint layout differs from this code in {diff}: "
                              f"checkpoint {[card['layout'].get(k) for k in diff]}, code {[mine[k] for k in diff]}")
    want = layout(expect) if expect is not None else mine
    diff = [k for k in want if json.dumps(want[k], sort_keys=True) != json.dumps(mine[k], sort_keys=True)]
    if diff:
        raise CheckpointError(f"{path}: checkpoint layout differs from the expected one in {diff}: "
                              f"checkpoint {[mine[k] for k in diff]}, expected {[want[k] for k in diff]}")
    net = PolicyNet(cfg)
    _fit(net, state, path)
    net.eval()
    kwargs.setdefault("policy_every", (card.get("ppo_config") or {}).get("policy_every"))
    policy = NetPolicy(net, name=name or card.get("name", path.stem), **kwargs)
    policy.card = card
    return policy


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


__all__ = ["PolicyNet", "PolicyNetConfig", "NetPolicy", "features", "expected_accel", "two_hot", "accel_to_bin", "save_policy",
           "load_policy", "read_checkpoint", "policy_from_checkpoint", "entropy", "ACCEL_BINS", "layout"]
