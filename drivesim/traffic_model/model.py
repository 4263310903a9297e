"""A learned traffic model: a small transformer over agent and lane tokens that picks each
agent's next action, executed through the kinematic bicycle model.

Per agent (batched over every [B, A] slot it drives, in one pass): a token for the agent
itself, its K nearest neighbours and M nearby lane pieces, all in the agent's own frame
(`learned_tokens.py`). A few pre-norm transformer layers mix them; the agent token's output
gives logits over a joint grid of acceleration x path-curvature bins. An action is sampled at
`temperature` (0: the most likely bin) and becomes (accel, steer = atan(curvature *
wheelbase)); the simulator applies the same actuator limits and bicycle step as for reactive
agents. Sampling is collision-aware (`SafetyConfig`, on by default): bins that accelerate
harder than IDM's interaction term allows behind the agent ahead in the agent's corridor are
masked out first; the learned distribution decides among the rest.

`LearnedTraffic` is the behaviour object handed to `Simulator(batch, behavior=...)` for agents
with ControlMode.LEARNED. Seeding: `reset(batch)` gives every row b its own torch.Generator,
seeded from (`seed`, `batch.scenarios[b].seed`), and each step draws one uniform per agent slot
of that scenario from it. So a rollout depends only on its scenario, the scenario's seed and the
behaviour seed: N different futures of one scenario are N copies with seeds 0..N-1
(`sim.futures.alternative_futures`, `sim.realism`). Same scenario and seeds: the same rollout,
bit for bit on one device and batch.

Artifacts: `save(model, dir, card)` writes `model.pt` and `card.json` (sha256 of model.pt,
config, lineage, metrics); `load(dir)` checks the hash (a modified file is an error).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from drivesim.traffic_model.tokens import (LANE_FEATURES, NEIGHBOUR_FEATURES, SELF_FEATURES, TokenConfig, Tokens,
                                              agent_tokens, corridor_leader)
from drivesim.core.checkpoint import CheckpointError, expect_dict, load_checkpoint
from drivesim.core.config import ConfigError, apply_overrides, config_to_dict
from drivesim.dynamics.bicycle import WHEELBASE_RATIO, BicycleConfig

FORMAT = "drivesim-traffic-model/1"
DEFAULT_ARTIFACT = Path(__file__).resolve().parents[2] / "policies" / "traffic"


@dataclass(frozen=True)
class SafetyConfig:
    """Feasibility masks applied before sampling. Collision-aware: actions accelerating harder
    than IDM allows behind the agent ahead in the agent's corridor are masked out (the
    interaction term of IDM, a_max (1 - (s*/s)^2), s* = min_gap + v headway + v dv /
    (2 sqrt(a_max b))); the closed-loop training labels are capped by the same bound. Road-aware
    (`road`): curvature bins whose path, held at the current speed, puts a box corner off the
    drivable area within `road_horizon` steps are masked for agents that are on it now, as long
    as one bin keeps them on it. Conflict-aware (`conflicts`): actions whose path (held) overlaps
    a nearby agent's constant-velocity path at `conflict_steps` are masked, unless every action
    does (agents right behind in the corridor are left to brake for themselves)."""

    enabled: bool = True
    min_gap: float = 2.0  # m
    headway: float = 1.0  # s
    accel: float = 2.0  # a_max, m/s^2
    decel: float = 3.0  # b, m/s^2
    road: bool = True  # also mask curvature bins that take an agent now on the drivable area off it ...
    road_horizon: int = 10  # ... within this many steps at its current speed (the box corners are checked)
    conflicts: bool = True  # also mask actions whose path meets a neighbour's constant-velocity path ...
    conflict_steps: tuple[int, ...] = (5, 10)  # ... at these steps ahead (boxes grown by conflict_margin)
    conflict_neighbours: int = 8  # nearest others checked (not those right behind the agent in its corridor)
    conflict_margin: float = 0.3  # m added to the agent's length and width


@dataclass(frozen=True)
class LearnedTrafficConfig:
    d_model: int = 64
    heads: int = 4
    layers: int = 2  # the last one updates only the agent token
    ff: int = 128  # feed-forward width
    tokens: TokenConfig = field(default_factory=TokenConfig)
    accel_bins: tuple[float, ...] = (-6.0, -4.0, -3.0, -2.0, -1.2, -0.6, -0.25, 0.0, 0.25, 0.6, 1.2, 2.0, 3.0)  # m/s^2
    curvature_bins: tuple[float, ...] = (-0.2, -0.12, -0.07, -0.04, -0.02, -0.01, -0.004, 0.0,
                                         0.004, 0.01, 0.02, 0.04, 0.07, 0.12, 0.2)  # 1/m, left positive
    temperature: float = 0.8  # default sampling temperature of the behaviour (flat between 0.5 and 1 on dev scenes)
    steer_every: int = 5  # steps an agent holds its sampled curvature bin (acceleration: drawn every step)
    safety: SafetyConfig = field(default_factory=SafetyConfig)

    @property
    def num_actions(self) -> int:
        return len(self.accel_bins) * len(self.curvature_bins)

    def validate_config(self, where: str = "learned") -> None:
        if self.d_model < 8 or self.d_model % self.heads or self.layers < 1 or self.ff < 1:
            raise ConfigError(f"{where}: need d_model >= 8 divisible by heads, layers >= 1, ff >= 1")
        for name in ("accel_bins", "curvature_bins"):
            v = getattr(self, name)
            if len(v) < 2 or any(b <= a for a, b in zip(v, v[1:])):
                raise ConfigError(f"{where}.{name}: need at least 2 increasing values, got {list(v)}")
        if self.steer_every < 1:
            raise ConfigError(f"{where}.steer_every: must be >= 1, got {self.steer_every}")
        if self.temperature < 0:
            raise ConfigError(f"{where}.temperature: must be >= 0, got {self.temperature}")


class _Block(nn.Module):
    """Pre-norm transformer layer; with `agent_only` only the first token is updated."""

    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))

    def forward(self, x: torch.Tensor, pad: torch.Tensor, agent_only: bool = False) -> torch.Tensor:
        h = self.norm1(x)
        q = h[:, :1] if agent_only else h
        x = (x[:, :1] if agent_only else x) + self.attn(q, h, h, key_padding_mask=pad, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


def _mlp(n_in: int, d: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, d), nn.GELU(), nn.Linear(d, d))


class TrafficModel(nn.Module):
    def __init__(self, config: LearnedTrafficConfig | None = None):
        super().__init__()
        cfg = self.config = config or LearnedTrafficConfig()
        cfg.validate_config()
        d = cfg.d_model
        self.agent_in, self.neighbour_in, self.lane_in = _mlp(SELF_FEATURES, d), _mlp(NEIGHBOUR_FEATURES, d), _mlp(LANE_FEATURES, d)
        self.kind = nn.Parameter(torch.zeros(3, d))  # token-kind embeddings: agent, neighbour, lane
        self.blocks = nn.ModuleList(_Block(d, cfg.heads, cfg.ff) for _ in range(cfg.layers))
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, cfg.num_actions))
        accel, curv = torch.meshgrid(torch.tensor(cfg.accel_bins), torch.tensor(cfg.curvature_bins), indexing="ij")
        self.register_buffer("grid_accel", accel.reshape(-1).float(), persistent=False)  # [num_actions]
        self.register_buffer("grid_curvature", curv.reshape(-1).float(), persistent=False)

    def forward(self, tok: Tokens) -> torch.Tensor:
        """Logits [N, num_actions] over the joint (accel, curvature) grid."""
        x = torch.cat([self.agent_in(tok.agent).unsqueeze(1) + self.kind[0], self.neighbour_in(tok.neighbours) + self.kind[1],
                       self.lane_in(tok.lanes) + self.kind[2]], dim=1)
        keep = torch.cat([torch.ones_like(tok.neighbours_mask[:, :1]), tok.neighbours_mask, tok.lanes_mask], dim=1)
        for i, block in enumerate(self.blocks):
            x = block(x, ~keep, agent_only=i == len(self.blocks) - 1)
        return self.head(x[:, 0])

    def actions(self, index: torch.Tensor, length: torch.Tensor):
        """(accel, steer) of joint action indices for boxes of `length`."""
        steer = torch.atan(self.grid_curvature[index] * WHEELBASE_RATIO * length)
        return self.grid_accel[index], steer

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def sample(logits: torch.Tensor, uniform: torch.Tensor, temperature: float) -> torch.Tensor:
    """Indices [N] drawn from softmax(logits / temperature) by inverting the CDF at `uniform` [N]
    (temperature 0: argmax)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    cdf = torch.softmax(logits.float() / temperature, dim=-1).cumsum(dim=-1)
    idx = torch.searchsorted(cdf, (uniform * cdf[:, -1]).unsqueeze(-1).contiguous()).squeeze(-1)
    return idx.clamp(max=logits.shape[-1] - 1)


def leader_bound(state, rows, cols, cfg: SafetyConfig) -> torch.Tensor:
    """[N] the highest acceleration IDM allows agents (rows, cols) behind the nearest agent
    ahead in their corridor (`corridor_leader`); +inf when there is none."""
    gap, v_lead = corridor_leader(state, rows, cols)
    v = state.speed[rows, cols]
    s_star = cfg.min_gap + (v * cfg.headway + v * (v - v_lead) / (2 * (cfg.accel * cfg.decel) ** 0.5)).clamp(min=0)
    bound = cfg.accel * (1 - (s_star / gap.clamp(min=0.1)) ** 2)
    return torch.where(torch.isfinite(gap), bound, torch.full_like(bound, float("inf")))


def mask_unsafe(logits: torch.Tensor, grid_accel: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """Logits [N, G] with the actions above each row's acceleration bound [N] removed (the
    hardest braking bins always stay)."""
    unsafe = (grid_accel.unsqueeze(0) > bound.unsqueeze(1)) & (grid_accel > grid_accel.min()).unsqueeze(0)
    return logits.masked_fill(unsafe, float("-inf"))


def cap_action(index: torch.Tensor, bound: torch.Tensor, model: "TrafficModel") -> torch.Tensor:
    """Joint action indices [N] whose acceleration exceeds `bound` [N] moved to the highest
    acceleration bin at or below it (the lowest bin if none), keeping their curvature bin."""
    acc = model.grid_accel.view(len(model.config.accel_bins), -1)[:, 0]
    nc = len(model.config.curvature_bins)
    allowed = (acc.unsqueeze(0) <= bound.unsqueeze(1)).sum(dim=1) - 1
    return torch.minimum(index // nc, allowed.clamp(min=0)) * nc + index % nc


def offroad_bins(state, bank, map_idx, rows, cols, curvature: torch.Tensor, steps: int, dt: float) -> torch.Tensor:
    """[N, nc] True where holding curvature bin k at the current speed for `steps` steps puts a
    corner of agent (rows, cols) off the drivable area (checked at the half and full horizon),
    all False for agents with a corner off it already or with every bin leaving it."""
    from drivesim.core.geometry import box_corners

    x, y, yaw, v = (t[rows, cols].unsqueeze(1) for t in (state.x, state.y, state.yaw, state.speed))
    length, width = state.length[rows, cols].unsqueeze(1), state.width[rows, cols].unsqueeze(1)
    n, nc = len(rows), len(curvature)
    m = map_idx[rows]
    off = torch.zeros(n, nc, dtype=torch.bool, device=x.device)
    for k in (steps // 2, steps):
        dist = v * k * dt  # [N, 1]
        turn = curvature.unsqueeze(0) * dist  # heading change
        small = turn.abs() < 1e-4
        fwd = torch.where(small, dist, torch.sin(turn) / torch.where(small, 1.0, curvature.unsqueeze(0)))
        k = torch.where(small, 1.0, curvature.unsqueeze(0))
        side = torch.where(small, 0.5 * curvature.unsqueeze(0) * dist ** 2, (1 - torch.cos(turn)) / k)
        c, s = torch.cos(yaw), torch.sin(yaw)
        px, py = x + fwd * c - side * s, y + fwd * s + side * c
        corners = box_corners(px, py, yaw + turn, length.expand(-1, nc), width.expand(-1, nc))  # [N, nc, 4, 2]
        off |= bank.signed_distance(m, corners.reshape(n, nc * 4, 2)).view(n, nc, 4).amax(-1) > 0
    now = box_corners(x[:, 0], y[:, 0], yaw[:, 0], length[:, 0], width[:, 0])  # [N, 4, 2]
    on_now = bank.signed_distance(m, now).amax(-1) <= 0
    usable = on_now & ~off.all(dim=1)
    return off & usable.unsqueeze(1)


def conflict_actions(state, rows, cols, grid_accel, grid_curvature, cfg: SafetyConfig, dt: float) -> torch.Tensor:
    """[N, G] True where holding joint action g puts agent (rows, cols) into the box of one of
    its `conflict_neighbours` nearest others (moving at constant velocity) at one of
    `conflict_steps`; all False for agents where every action does. Others already overlapping
    the agent now, and others right behind it in its corridor, are not checked."""
    from drivesim.core.geometry import boxes_overlap

    N, A = len(rows), state.num_agents
    K = min(cfg.conflict_neighbours, A - 1)
    x, y, yaw, v = (t[rows, cols].unsqueeze(1) for t in (state.x, state.y, state.yaw, state.speed))  # [N, 1]
    li, wi = state.length[rows, cols], state.width[rows, cols]
    d = state.xy[rows] - torch.cat([x, y], 1).unsqueeze(1)  # [N, A, 2]
    c0, s0 = torch.cos(yaw), torch.sin(yaw)
    lon, lat = d[..., 0] * c0 + d[..., 1] * s0, d[..., 1] * c0 - d[..., 0] * s0
    behind = (lon < 0) & (lat.abs() < 0.5 * (wi.unsqueeze(1) + state.width[rows]))
    now = boxes_overlap((x, y, yaw, li.unsqueeze(1), wi.unsqueeze(1)), tuple(t[rows] for t in state.boxes()))
    ok = state.valid[rows] & ~behind & ~now
    ok[torch.arange(N, device=x.device), cols] = False
    order = torch.where(ok, d.norm(dim=-1), torch.full_like(lon, float("inf"))).topk(K, dim=1, largest=False)
    near, j = torch.isfinite(order.values), order.indices  # [N, K]
    g = lambda t: t[rows].gather(1, j).unsqueeze(1)  # [N, 1, K]
    xj, yj, yawj, vj, lj, wj = (g(t) for t in (state.x, state.y, state.yaw, state.speed, state.length, state.width))
    a, kappa = grid_accel.unsqueeze(0), grid_curvature.unsqueeze(0)  # [1, G]
    hit = torch.zeros(N, grid_accel.shape[0], dtype=torch.bool, device=x.device)
    for k in cfg.conflict_steps:
        t = k * dt
        stop = (-v / a.clamp(max=-1e-6)).clamp(min=0)  # time to stop when braking
        tt = torch.where((a < 0) & (stop < t), stop, torch.full_like(stop, t))
        dist = (v * tt + 0.5 * a * tt * tt).clamp(min=0)  # [N, G] travelled
        turn = kappa * dist
        straight = kappa.abs() < 1e-5
        safe_k = torch.where(straight, torch.ones_like(kappa), kappa)
        fwd = torch.where(straight, dist, torch.sin(turn) / safe_k)
        side = torch.where(straight, 0.5 * kappa * dist * dist, (1 - torch.cos(turn)) / safe_k)
        px, py = x + fwd * c0 - side * s0, y + fwd * s0 + side * c0
        mine = (px.unsqueeze(-1), py.unsqueeze(-1), (yaw + turn).unsqueeze(-1), (li + cfg.conflict_margin).view(-1, 1, 1),
                (wi + cfg.conflict_margin).view(-1, 1, 1))
        theirs = (xj + vj * torch.cos(yawj) * t, yj + vj * torch.sin(yawj) * t, yawj, lj, wj)
        hit |= (boxes_overlap(mine, theirs) & near.unsqueeze(1)).any(dim=-1)
    return hit & ~hit.all(dim=1, keepdim=True)


def row_seed(seed: int, scenario_seed: int) -> int:
    """The generator seed of one row: a hash of the behaviour seed and the scenario's seed."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(scenario_seed) & 0xFFFFFFFF]).generate_state(1)[0])


class LearnedTraffic:
    """The behaviour of LEARNED agents: `Simulator(batch, behavior=LearnedTraffic(model))`."""

    name = "learned"

    def __init__(self, model: TrafficModel, temperature: float | None = None, seed: int = 0, card: dict | None = None,
                 dynamics: BicycleConfig | None = None, style: float = 1.0):
        self.model = model.eval()
        self.style = float(style)  # 1: drive like the real logs, 0: like the procedural IDM/MOBIL traffic
        self.temperature = model.config.temperature if temperature is None else float(temperature)
        self.seed = int(seed)
        self.card = card or {}
        self.dynamics = dynamics or BicycleConfig()
        self._gens: list[torch.Generator] = []
        self._sizes: list[int] = []
        self._held = None  # [B, A] the curvature bin each agent holds (-1: none yet)

    @classmethod
    def load(cls, path=None, temperature: float | None = None, seed: int = 0, device="cpu") -> "LearnedTraffic":
        model, card = load(path or DEFAULT_ARTIFACT, device=device)
        return cls(model, temperature, seed, card)

    def reset(self, batch) -> None:
        self.model.to(batch.device)
        self._gens = []
        for s in batch.scenarios:
            g = torch.Generator(device=batch.device)
            g.manual_seed(row_seed(self.seed, s.seed))
            self._gens.append(g)
        self._sizes = [s.num_agents for s in batch.scenarios]
        self._held = None

    def uniforms(self, B: int, A: int, device) -> torch.Tensor:
        """[B, A] uniforms, one per agent slot, each row from its own generator."""
        if len(self._gens) != B:
            raise RuntimeError("LearnedTraffic.reset(batch) must be called before act() (the Simulator does it)")
        u = torch.zeros(B, A, device=device)
        for b, (g, n) in enumerate(zip(self._gens, self._sizes)):
            u[b, :n] = torch.rand(n, generator=g, device=device)
        return u

    @torch.no_grad()
    def act(self, state, batch, active: torch.Tensor):
        """accel, steer [B, A] for the `active` agents (zeros elsewhere). Every step each agent
        samples its action; the curvature bin is re-drawn from the joint distribution only
        every `steer_every` steps of its row's clock (and when it first becomes active), in
        between the acceleration is drawn given the held curvature bin."""
        B, A = active.shape
        u = self.uniforms(B, A, state.device)
        accel, steer = torch.zeros_like(state.x), torch.zeros_like(state.x)
        if self._held is None or self._held.shape != (B, A):
            self._held = torch.full((B, A), -1, dtype=torch.long, device=state.device)  # held curvature bin
        rows, cols = active.nonzero(as_tuple=True)
        if len(rows) == 0:
            return accel, steer
        cfg = self.model.config
        tok = agent_tokens(state, batch.bank, batch.map_idx, rows, cols, cfg.tokens, batch.dt, self.style)
        logits = self.model(tok)
        nc = len(cfg.curvature_bins)
        off = torch.zeros(len(rows), nc, dtype=torch.bool, device=logits.device)
        if cfg.safety.enabled:
            logits = mask_unsafe(logits, self.model.grid_accel, leader_bound(state, rows, cols, cfg.safety))
            if cfg.safety.road:
                off = offroad_bins(state, batch.bank, batch.map_idx, rows, cols, self.model.grid_curvature[:nc],
                                   cfg.safety.road_horizon, batch.dt)  # [N, nc]
                logits = logits.masked_fill(off.unsqueeze(1).expand(-1, len(cfg.accel_bins), -1).reshape(len(rows), -1),
                                            float("-inf"))
        if cfg.safety.enabled and cfg.safety.conflicts:
            conflict = conflict_actions(state, rows, cols, self.model.grid_accel, self.model.grid_curvature, cfg.safety, batch.dt)
            conflict &= ~torch.isinf(logits).all(dim=1, keepdim=True)
            masked = logits.masked_fill(conflict, float("-inf"))
            logits = torch.where(torch.isinf(masked).all(dim=1, keepdim=True), logits, masked)  # never mask every action
        held = self._held[rows, cols]
        keep = (held >= 0) & (state.row_step[rows] % cfg.steer_every != 0)
        keep &= ~off.gather(1, held.clamp(min=0).unsqueeze(1)).squeeze(1)  # a held bin that now leaves the road is re-drawn
        if bool(keep.any()):  # the acceleration given the held curvature: the other curvature columns drop out
            other = torch.arange(nc, device=logits.device).unsqueeze(0) != held.clamp(min=0).unsqueeze(1)  # [N, nc]
            drop = (other.unsqueeze(1) & keep.view(-1, 1, 1)).expand(-1, len(cfg.accel_bins), -1).reshape(len(rows), -1)
            logits = logits.masked_fill(drop, float("-inf"))
        idx = sample(logits, u[rows, cols], self.temperature)
        self._held[rows, cols] = idx % nc
        a, s = self.model.actions(idx, state.length[rows, cols])
        return accel.index_put((rows, cols), a), steer.index_put((rows, cols), s)


# ------------------------------------------------------------------------------ artifacts
def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(model: TrafficModel, directory, card: dict | None = None) -> Path:
    """Write `model.pt` (weights, float32) and `card.json` (hash, config, `card` fields) to
    `directory`; returns the card path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "model.pt"
    state = {k: v.detach().cpu().float().contiguous() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "state_dict": state}, weights)
    full = {"format": FORMAT, "file": weights.name, "sha256": file_sha256(weights), "bytes": weights.stat().st_size,
            "parameters": model.num_parameters, "config": config_to_dict(model.config), **(card or {})}
    path = out / "card.json"
    path.write_text(json.dumps(full, indent=1) + "\n")
    return path


def load(path, device="cpu") -> tuple[TrafficModel, dict]:
    """(model, card) from an artifact folder (or its card.json / model.pt); the sha256 in the
    card must match the weights file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no traffic model at {p} (train one with `drivesim train traffic`)")
    folder = p if p.is_dir() else p.parent
    card_path = folder / "card.json"
    if not card_path.exists():
        raise FileNotFoundError(f"no traffic-model card at {card_path} (train one with `drivesim train traffic`)")
    card = json.loads(card_path.read_text())
    if card.get("format") != FORMAT:
        raise ValueError(f"{card_path}: not a drivesim traffic model card (format {card.get('format')!r}, expected {FORMAT!r})")
    weights = folder / card.get("file", "model.pt")
    digest = file_sha256(weights)
    if digest != card.get("sha256"):
        raise ValueError(f"{weights}: sha256 {digest[:16]}... does not match its card ({str(card.get('sha256'))[:16]}...): "
                         "the file was modified or belongs to another model")
    cfg = apply_overrides(LearnedTrafficConfig(), card["config"], where=f"{card_path.name}:config")
    model = TrafficModel(cfg)
    blob = expect_dict(load_checkpoint(weights, "traffic model", map_location=device), weights, "traffic model",
                       ("state_dict",))
    try:
        model.load_state_dict(blob["state_dict"])
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{weights}: the weights do not fit the model its card describes "
                              f"({str(exc).strip().splitlines()[0][:300]})") from None
    return model.to(device).eval(), card


def entropy_bits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy [N] of the action distributions, in bits (a diagnostic)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1) / math.log(2)
