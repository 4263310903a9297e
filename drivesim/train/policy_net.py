"""The learned driving policy: the ego-centric vector observation in, a categorical acceleration
out, steering by pure pursuit along the route (a one-dimensional trajectory vocabulary tracked by
a controller), plus a value head for RL.

`PolicyNet` encodes agents and lane pieces with shared MLPs and masked max-pooling, the route and
the ego state with MLPs, and a trunk feeds the action logits [B, K] and the value [B].
`NetPolicy` wraps a net as a drivesim policy (greedy or sampled). Checkpoints hold the weights,
the config and a card (layout, provenance); loading one with another observation or action
layout is an error that says what differs. Checkpoints load as plain data (`weights_only`); a
corrupt file, a card that is not a dict, NaN weights, weights that do not fit the card's network or
whose hash differs from the card's `weights_sha256` are `CheckpointError`s naming the file.
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
from drivesim.dynamics.bicycle import WHEELBASE_RATIO
from drivesim.map.bank import CHUNK
from drivesim.sim.observation import AGENT_FEATURES, EGO_FEATURES, LANE_FEATURES, Observation, ObservationConfig
from drivesim.sim.policy import clip_action

ACCEL_BINS = (-8.0, -6.0, -4.5, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.5)  # m/s^2
FORMAT = "drivesim-policy/1"


@dataclass(frozen=True)
class PolicyNetConfig:
    hidden: int = 128
    accel_bins: tuple = ACCEL_BINS
    lookahead_time: float = 1.0  # s of pure-pursuit lookahead along the route ...
    min_lookahead: float = 6.0  # m ... at least
    # the ego's last applied acceleration as an input: off, because behaviour cloning then copies it (the
    # expert's acceleration changes slowly, so the last one predicts it) and the clone never brakes in time
    # (the copycat problem, de Haan et al. 2019): 0.50 -> 0.91 success on fresh nominal scenarios after BC
    last_accel: bool = False
    obs: ObservationConfig = field(default_factory=ObservationConfig)


def layout(cfg: PolicyNetConfig) -> dict:
    """What a checkpoint must agree on with the code that loads it."""
    return {"agent_features": AGENT_FEATURES, "lane_features": LANE_FEATURES, "ego_features": EGO_FEATURES,
            "chunk": CHUNK, "obs": config_to_dict(cfg.obs), "accel_bins": list(cfg.accel_bins), "last_accel": cfg.last_accel}


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
        self.v = nn.Linear(h, 1)

    @staticmethod
    def _pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(~mask.unsqueeze(-1), -1e4).amax(dim=1).clamp(min=0.0)  # empty sets pool to 0

    def forward(self, f: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, K], value [B]) from `features(obs)`."""
        ego = f["ego"]
        if not self.cfg.last_accel:
            ego = torch.cat([ego[:, :1], torch.zeros_like(ego[:, 1:2]), ego[:, 2:]], -1)  # EGO_FEATURES[1]: accel
        z = torch.cat([self._pool(self.agent_enc(f["agents"]), f["agents_mask"]),
                       self._pool(self.lane_enc(f["lanes"]), f["lanes_mask"]),
                       self.route_enc(f["route"]), self.ego_enc(ego)], -1)
        z = self.trunk(z)
        return self.pi(z), self.v(z).squeeze(-1)


def route_steer(obs: Observation, cfg: PolicyNetConfig) -> torch.Tensor:
    """[B] pure-pursuit steering towards the route point `lookahead` metres ahead (ego frame)."""
    route = obs.route  # [B, R, 2], points every route_spacing m ahead of the ego's route position
    speed, length = obs.state.speed[:, 0], obs.state.length[:, 0]
    ahead = (speed * cfg.lookahead_time).clamp(min=cfg.min_lookahead)
    k = (ahead / cfg.obs.route_spacing - 1).clamp(0, route.shape[1] - 1.001)
    i = k.floor().long()
    w = (k - i).unsqueeze(-1)
    pick = lambda j: route.gather(1, j.clamp(max=route.shape[1] - 1).view(-1, 1, 1).expand(-1, 1, 2)).squeeze(1)
    target = pick(i) * (1 - w) + pick(i + 1) * w
    dist = target.norm(dim=-1).clamp(min=1.0)
    alpha = torch.atan2(target[:, 1], target[:, 0])
    return torch.atan(2 * WHEELBASE_RATIO * length * torch.sin(alpha) / dist)


class NetPolicy:
    """A PolicyNet as a drivesim policy: acceleration from the head (argmax, or sampled with
    `generator` at `temperature`), steering by pure pursuit along the route."""

    def __init__(self, net: PolicyNet, name: str = "net", greedy: bool = True, temperature: float = 1.0,
                 generator: torch.Generator | None = None, policy_every: int | None = None):
        self.net, self.name, self.greedy, self.temperature, self.generator = net, name, greedy, temperature, generator
        self.policy_every = policy_every  # simulation steps per decision it was trained at (evaluate uses it); None: any
        self.bins = torch.tensor(net.cfg.accel_bins)

    def reset(self, batch) -> None:
        pass

    @torch.no_grad()
    def act(self, obs: Observation) -> torch.Tensor:
        logits, _ = self.net(features(obs))
        if self.greedy:
            k = logits.argmax(dim=-1)
        else:
            k = torch.multinomial(torch.softmax(logits / self.temperature, -1), 1, generator=self.generator).squeeze(-1)
        return clip_action(torch.stack([self.bins.to(logits.device)[k], route_steer(obs, self.net.cfg)], -1))


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


def read_checkpoint(path) -> tuple[dict, dict]:
    """(state_dict, card) of a policy checkpoint, checked: a dict with a dict card of this format,
    a state dict of finite tensors whose hash matches the card's `weights_sha256` (a checkpoint
    without one loads with a warning). Anything else is a CheckpointError naming the file."""
    blob = expect_dict(load_checkpoint(path, "drivesim policy checkpoint"), path, "policy checkpoint", ("state_dict", "card"))
    card, state = blob["card"], blob["state_dict"]
    if not isinstance(card, dict):
        raise CheckpointError(f"{path}: the card is a {type(card).__name__}, not a dict")
    if card.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {card.get('format')!r}, expected {FORMAT!r}")
    for key in ("config", "layout"):
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
    state, card = read_checkpoint(path)
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


def policy_from_spec(spec: str) -> NetPolicy | None:
    """The policy a command-line spec names when it is a checkpoint: `load_policy(spec)` for an
    existing `.pt` file, an error for a `.pt` path that does not exist, None otherwise (a
    built-in name or module:Class, for the caller to resolve)."""
    path = Path(spec)
    if path.suffix != ".pt":
        return None
    if not path.is_file():
        raise ValueError(f"policy checkpoint {spec!r}: no such file")
    return load_policy(path)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


__all__ = ["PolicyNet", "PolicyNetConfig", "NetPolicy", "features", "route_steer", "accel_to_bin", "save_policy",
           "load_policy", "read_checkpoint", "policy_from_spec", "entropy", "ACCEL_BINS", "layout"]
