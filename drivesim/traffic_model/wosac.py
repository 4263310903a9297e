"""Realism of simulated traffic: the WOSAC-style meta-metric (docs/definitions.md, "Realism of traffic
behavior (Waymo Sim Agents, WOSAC 2025 config)").

Per scenario, R rollouts (32) of the future (80 steps, 8 s at 10 Hz) start from the logged
history. Ten features are computed per agent and step for the log and for every rollout. Per
feature and per agent, a histogram of the simulated values over all rollouts and future steps
(WOSAC `independent_timesteps`, `aggregate_objects=False`; pseudocount 0.1 added to every bin,
values outside the range clip to the end bins) scores each logged value; the log-likelihoods
are averaged over the scored agents and steps of the scenario and exponentiated: L_i in [0, 1].
Collision, offroad and traffic-light violation are Bernoulli per agent, as in WOSAC: the event
is "any such step among the future steps where the log is defined", its probability the
fraction of rollouts with it, smoothed over 2 bins with WOSAC's BernoulliEstimate pseudocount
(0.001: the 2025 config leaves the proto default). Meta-metric = sum w_i L_i (weights sum to 1).

Trajectories are dicts of [T, B, A] tensors (x, y, yaw, speed, length, width, valid), e.g. from
`SimState.stack_time` or `log_trajectory`; T = history_steps + future_steps. Rollouts start
from step history_steps - 1 (the last logged step); the agents valid in the log there are
scored, the ego included and static objects excluded (obstacles, not traffic:
`RealismConfig.score_static`). Feature values are NaN where undefined.

Features, and where they differ from the WOSAC code:
- speed: the `speed` field (WOSAC differentiates positions); accel, angular speed (yaw rate),
  angular accel: backward differences over dt, defined where the agent is valid at t and t-1
  (and t-2 for angular accel) (WOSAC: central differences).
- distance to nearest object: exact signed distance between oriented boxes (the gap when apart,
  minus the penetration depth when overlapping) to the nearest other valid box, static objects
  included; above the histogram top (40 m) it reads 40. Sharp corners by default
  (`corner_rounding` 0.7 gives WOSAC's rounded boxes).
- collision: the box overlaps another (distance <= 0; touching counts, as in metrics/boxes.py).
- TTC: WOSAC's: time to collision with the object followed (the nearest one ahead that overlaps
  laterally, heading within 75 deg, or 10 deg when the overlap is under 0.5 m) at constant
  speeds, gap / (v_i - v_j), 5 s when not closing in or nothing is followed. Not the all-pairs
  box sweep of `ttc.ttc_constant_velocity`: over all pairs that costs far more (a 5 s horizon
  puts every oncoming car within 250 m on a collision-course candidate list) and WOSAC does not
  define TTC that way.
- distance to road edge: MapBank signed distance (positive off the drivable area) of the box
  centre (WOSAC: of the most off-road corner); offroad: a corner > `offroad_threshold` (0 m).
- traffic-light violation: a vehicle whose centre crosses a red stop line between two steps
  (`red_light_violations`: forward across the line, within the lane's half width of the stop
  point, heading within 60 deg of the lane's): the stop lines and their states come from the map
  bank, logged per-step states on real maps (map/signals.py), the cycle on procedural ones
  (WOSAC: crossing the stop point of a red-lit lane the agent is on). Vehicles only, as WOSAC
  scores it; other agents read 0.

Speed: per chunk of frames, one bmm scores all agent pairs for the two candidate tests (both
are quadratic forms in the other's position) and only the few candidate pairs get exact
geometry; padding slots are dropped per chunk (traffic_model/wosac_interaction.py). The
histogram plots are `realism.plot_histograms`. tests/traffic_model/test_wosac.py checks the result
against all-pairs references (`all_pairs_reference`, a plain-Python WOSAC TTC loop) and shapely.
R=32, T=90, B=8, A=226 on one thread of the project's 2-core machine: about 3 s with 135 valid
agents per scene (urban, 40 % parked), 7-9 s with all 226 valid on a two-way highway, about 1 s
when one rollout object is passed 32 times (deterministic models: featurized once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from drivesim.core.geometry import box_corners, wrap_angle
from drivesim.core.types import AgentType
from drivesim.metrics.boxes import half_diagonal
from drivesim.traffic_model.wosac_interaction import nearest_object_and_ttc


@dataclass(frozen=True)
class FeatureSpec:
    """A feature's histogram: range [lo, hi] in `bins` equal bins, meta-metric weight and the
    pseudocount added to every bin. Bernoulli features are 0/1 with 2 bins (-0.5, 0.5, 1.5)."""

    name: str
    lo: float
    hi: float
    bins: int
    weight: float
    bernoulli: bool = False
    pseudocount: float = 0.1


HIST_PSEUDOCOUNT = 0.1  # docs/definitions.md, WOSAC 2025
BERNOULLI_PSEUDOCOUNT = 0.001  # WOSAC BernoulliEstimate default


def _bernoulli(name: str, weight: float) -> FeatureSpec:
    return FeatureSpec(name, -0.5, 1.5, 2, weight, True, BERNOULLI_PSEUDOCOUNT)


WOSAC_2025 = (  # docs/definitions.md table (waymo-open-dataset challenge_2025_sim_agents_config)
    FeatureSpec("speed", 0.0, 25.0, 10, 0.05),
    FeatureSpec("accel", -12.0, 12.0, 11, 0.05),
    FeatureSpec("angular_speed", -0.628, 0.628, 11, 0.05),
    FeatureSpec("angular_accel", -3.14, 3.14, 11, 0.05),
    FeatureSpec("distance_to_object", -5.0, 40.0, 10, 0.10),
    _bernoulli("collision", 0.25),
    FeatureSpec("ttc", 0.0, 5.0, 10, 0.10),
    FeatureSpec("distance_to_road_edge", -20.0, 40.0, 10, 0.05),
    _bernoulli("offroad", 0.25),
    _bernoulli("traffic_light_violation", 0.05),
)
FEATURES = tuple(s.name for s in WOSAC_2025)
STATIC = int(AgentType.STATIC)


@dataclass(frozen=True)
class RealismConfig:
    n_rollouts: int = 32  # rollouts per scenario (WOSAC)
    history_steps: int = 10  # logged steps up to the rollout start, included (1 s)
    future_steps: int = 80  # scored steps (8 s)
    dt: float = 0.1  # s
    features: tuple[FeatureSpec, ...] = WOSAC_2025
    ttc_max: float = 5.0  # s, WOSAC MAXIMUM_TIME_TO_COLLISION (also the TTC histogram top)
    corner_rounding: float = 0.0  # WOSAC rounds box corners by 0.7 * min(length, width) / 2
    offroad_threshold: float = 0.0  # m, a corner farther off the drivable area is offroad
    score_static: bool = False  # score static objects (cones, parked) as agents too
    chunk_pairs: int = 1 << 20  # frames * A * A per chunk of the pairwise pass (memory, cache)

    def spec(self, name: str) -> FeatureSpec:
        return next(s for s in self.features if s.name == name)

    def validate_config(self, where: str = "realism") -> None:
        from drivesim.core.config import ConfigError

        names = [s.name for s in self.features]
        if sorted(names) != sorted(FEATURES):
            raise ConfigError(f"{where}.features: need each of {list(FEATURES)} once, got {names}")
        if abs(sum(s.weight for s in self.features) - 1.0) > 1e-6:
            raise ConfigError(f"{where}.features: weights must sum to 1, got {sum(s.weight for s in self.features)}")
        for s in self.features:
            ok = s.lo < s.hi and s.bins >= 1 and s.pseudocount > 0 and s.weight >= 0
            if not ok or (s.bernoulli and s.bins != 2):
                raise ConfigError(f"{where}.features.{s.name}: need lo < hi, bins >= 1 (2 if Bernoulli), "
                                  f"pseudocount > 0, weight >= 0; got {s}")
        if self.n_rollouts < 1 or self.history_steps < 1 or self.future_steps < 1 or self.dt <= 0:
            raise ConfigError(f"{where}: need n_rollouts, history_steps, future_steps >= 1 and dt > 0")
        if self.ttc_max <= 0:
            raise ConfigError(f"{where}.ttc_max: must be positive, got {self.ttc_max}")
        if not 0.0 <= self.corner_rounding < 1.0:
            raise ConfigError(f"{where}.corner_rounding: must be in [0, 1), got {self.corner_rounding}")


# ---------------------------------------------------------------------------------- features
def features(traj: dict, bank, map_idx: torch.Tensor, agent_type: torch.Tensor | None = None,
             config: RealismConfig = RealismConfig(), start_step: int = 0) -> dict[str, torch.Tensor]:
    """Realism features {name: [T, B, A]} of a trajectory (dict of [T, B, A] tensors), NaN where
    undefined. map_idx [B]; agent_type [B, A] (None: every agent counts as a vehicle for the
    traffic-light feature); `start_step`: the scenario step of the trajectory's first step (signals)."""
    valid = traj["valid"].bool()
    x, y, yaw, speed, length, width = _finite(traj, valid)
    v1 = valid & _shift(valid, 1)
    v2 = v1 & _shift(valid, 2)
    omega = wrap_angle(_diff(yaw)) / config.dt
    dist, ttc = interaction_features(x, y, yaw, speed, length, width, valid, config)
    edge, offroad = map_features(x, y, yaw, length, width, valid, bank, map_idx, config.offroad_threshold)
    values = {
        "speed": (speed, valid), "accel": (_diff(speed) / config.dt, v1), "angular_speed": (omega, v1),
        "angular_accel": (_diff(omega) / config.dt, v2), "distance_to_object": (dist, valid),
        "collision": ((dist <= 0).to(x.dtype), valid), "ttc": (ttc, valid), "distance_to_road_edge": (edge, valid),
        "offroad": (offroad, valid),
        "traffic_light_violation": (red_light_violations(x, y, yaw, v1, bank, map_idx, agent_type, start_step, config.dt), valid),
    }
    return {name: torch.where(ok, v, torch.full_like(v, math.nan)) for name, (v, ok) in values.items()}


def _finite(traj: dict, valid: torch.Tensor):
    """x, y, yaw, speed, length, width with harmless values in invalid slots (padding may hold NaN)."""
    out = []
    for name, fill in (("x", 0.0), ("y", 0.0), ("yaw", 0.0), ("speed", 0.0), ("length", 1.0), ("width", 1.0)):
        v = traj[name].float()
        out.append(torch.where(valid, v, torch.full_like(v, fill)))
    return out


def _shift(v: torch.Tensor, k: int) -> torch.Tensor:
    """v delayed by k steps along time (the first k steps are zero / False)."""
    return torch.cat([torch.zeros_like(v[:k]), v[:-k]]) if v.shape[0] > k else torch.zeros_like(v)


def _diff(v: torch.Tensor) -> torch.Tensor:
    """Backward difference along time (0 at the first step, masked by the callers)."""
    return v - _shift(v, 1)


def red_light_violations(x, y, yaw, v1, bank, map_idx, agent_type=None, start_step: int = 0, dt: float = 0.1,
                         max_angle: float = math.radians(60)) -> torch.Tensor:
    """[T, B, A] 1.0 where a vehicle valid at t and t-1 (v1) crossed a stop line that is red at
    step t: its centre goes from behind the line (along < 0) to on or past it, within the line's
    half width, heading within max_angle of the lane. Stop lines: `MapBank.stop_line` [M, S, 5]
    and their signals `stop_group`, states from `MapBank.group_red` at (start_step + t) * dt."""
    T, B, A = x.shape
    out = torch.zeros_like(x)
    groups = bank.stop_group[map_idx]  # [B, S]
    if groups.numel() == 0 or not bool((groups >= 0).any()) or T < 2:
        return out
    line = bank.stop_line[map_idx].to(x.dtype)  # [B, S, 5]
    red = torch.stack([bank.group_red(groups, map_idx, (start_step + t) * dt) for t in range(T)])  # [T, B, S]
    ox, oy, ux, uy, hw = (line[..., k].unsqueeze(0).unsqueeze(2) for k in range(5))  # [1, B, 1, S]
    px, py = x.unsqueeze(-1) - ox, y.unsqueeze(-1) - oy  # [T, B, A, S]
    along, lat = px * ux + py * uy, py * ux - px * uy
    before = torch.cat([torch.zeros_like(along[:1]), along[:-1]])
    aligned = (yaw.unsqueeze(-1) - torch.atan2(uy, ux)).cos() > math.cos(max_angle)
    crossed = (before < 0) & (along >= 0) & (lat.abs() <= hw) & aligned & v1.unsqueeze(-1)
    hit = (crossed & red.unsqueeze(2) & (groups >= 0).view(1, B, 1, -1)).any(-1)  # [T, B, A]
    if agent_type is not None:
        hit = hit & (agent_type == int(AgentType.VEHICLE)).unsqueeze(0)
    return hit.to(x.dtype)


def map_features(x, y, yaw, length, width, valid, bank, map_idx, threshold: float = 0.0):
    """Signed distance [T, B, A] of the box centre to the drivable edge (positive outside) and
    offroad [T, B, A] (1.0 where a corner is more than `threshold` outside); NaN where invalid.

    Only valid slots are looked up, and corners only where the centre's value leaves the answer
    open: the raster is Lipschitz (sqrt 2, bilinear), so corners within hd of the centre differ
    from it by at most sqrt(2) hd."""
    edge, offroad = torch.full_like(x, math.nan), torch.full_like(x, math.nan)
    sel = valid.nonzero(as_tuple=True)  # (t, b, a)
    if len(sel[0]) == 0:
        return edge, offroad
    rows = map_idx[sel[1]]
    centre = bank.signed_distance(rows, torch.stack([x[sel], y[sel]], -1).unsqueeze(1))[:, 0]  # [P]
    bound = math.sqrt(2) * half_diagonal(length[sel], width[sel]) + 0.05
    off = (centre - bound > threshold).to(x.dtype)
    open_ = ((centre - bound <= threshold) & (centre + bound > threshold)).nonzero().squeeze(1)
    if len(open_):
        corners = box_corners(*(v[sel].index_select(0, open_) for v in (x, y, yaw, length, width)))  # [Q, 4, 2]
        worst = bank.signed_distance(rows.index_select(0, open_), corners).amax(dim=-1)
        off = off.index_copy(0, open_, (worst > threshold).to(x.dtype))
    edge[sel], offroad[sel] = centre, off
    return edge, offroad


# ------------------------------------------------------------------------ interaction features
def interaction_features(x, y, yaw, speed, length, width, valid, config: RealismConfig = RealismConfig()):
    """Signed distance to the nearest other valid box and WOSAC TTC (`wosac_interaction.nearest_object_and_ttc`)
    with the config's histogram top, TTC horizon, corner rounding and chunk size."""
    return nearest_object_and_ttc(x, y, yaw, speed, length, width, valid, config.spec("distance_to_object").hi,
                                  config.ttc_max, config.corner_rounding, config.chunk_pairs)


# ---------------------------------------------------------------------------------- likelihoods
def log_likelihoods(sim_feats: dict, log_feats: dict, masks, config: RealismConfig = RealismConfig()) -> dict:
    """Likelihood L_i [B] of the logged features under the simulated ones, per feature.

    sim_feats: {name: [R, T, B, A]}; log_feats: {name: [T, B, A]} (NaN: undefined, skipped);
    masks: bool [T, B, A] (or {name: mask}) of the (step, agent) entries scored in the log and
    whose simulated values fill the histograms (scored agents x future steps)."""
    out = {}
    for spec in config.features:
        mask = masks[spec.name] if isinstance(masks, dict) else masks
        score = bernoulli_likelihood if spec.bernoulli else histogram_likelihood
        out[spec.name] = score(sim_feats[spec.name], log_feats[spec.name], mask.bool(), spec)
    return out


def meta_metric(table: dict, config: RealismConfig = RealismConfig()) -> torch.Tensor:
    """sum_i w_i L_i [B]."""
    return sum(s.weight * table[s.name] for s in config.features)


def bin_index(values: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """Histogram bin of each value (outside the range: the end bins; NaN: bin 0)."""
    k = torch.floor((values - spec.lo) * (spec.bins / (spec.hi - spec.lo)))
    return k.nan_to_num(0.0).clamp(0, spec.bins - 1).long()


def histogram_likelihood(sim: torch.Tensor, log: torch.Tensor, mask: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """exp(mean log P(logged bin)) [B], P from each agent's histogram over rollouts x steps."""
    B, A = log.shape[-2:]
    base = torch.arange(B * A, device=log.device).view(B, A) * spec.bins
    weight = (mask & ~torch.isnan(sim)).reshape(-1).to(torch.float32)  # [R, T, B, A] flat
    counts = torch.bincount((base + bin_index(sim, spec)).reshape(-1), weights=weight, minlength=B * A * spec.bins)
    counts = counts.to(torch.float32).view(B, A, spec.bins) + spec.pseudocount
    logp = (counts / counts.sum(dim=-1, keepdim=True)).log().view(-1)[base + bin_index(log, spec)]  # [T, B, A]
    ok = mask & ~torch.isnan(log)
    total = torch.where(ok, logp, torch.zeros_like(logp)).sum(dim=(0, 2))
    return torch.exp(total / ok.sum(dim=(0, 2)))


def bernoulli_likelihood(sim: torch.Tensor, log: torch.Tensor, mask: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """exp(mean over agents of log P(logged outcome)) [B]; outcome: any event at the scored steps
    where the log is defined; P(event) = (rollouts with one + c) / (R + 2c)."""
    ok = mask & ~torch.isnan(log)  # [T, B, A]
    log_any = ((log > 0.5) & ok).any(dim=0)  # [B, A]
    sim_any = ((sim > 0.5) & ok).any(dim=1)  # [R, B, A] (NaN > 0.5 is False)
    c = spec.pseudocount
    p_event = (sim_any.sum(dim=0).to(torch.float32) + c) / (sim.shape[0] + 2 * c)
    logp = torch.where(log_any, p_event, 1 - p_event).log()
    scored = ok.any(dim=0)
    return torch.exp(torch.where(scored, logp, torch.zeros_like(logp)).sum(dim=-1) / scored.sum(dim=-1))


# ----------------------------------------------------------------------------------- top level
def scored_agents(log_traj: dict, agent_type: torch.Tensor | None, config: RealismConfig = RealismConfig()):
    """[B, A] agents valid in the log at the rollout start (static objects only if score_static)."""
    keep = log_traj["valid"][config.history_steps - 1].bool()
    if agent_type is not None and not config.score_static:
        keep = keep & (agent_type != STATIC)
    return keep


def realism_score(sim_rollouts: list[dict], log_traj: dict, bank, map_idx: torch.Tensor,
                  agent_type: torch.Tensor | None = None, config: RealismConfig = RealismConfig(),
                  return_features: bool = False):
    """Realism of R simulated rollouts against the log: ({name: L_i [B]}, meta-metric [B]).

    sim_rollouts: R dicts of [T, B, A] tensors (their first history_steps steps are the logged
    history); log_traj: the same for the log; T = history_steps + future_steps. With
    return_features, also (sim_feats [R, F, B, A], log_feats [F, B, A], mask [F, B, A]) over the
    F = future_steps scored steps (for `plot_histograms`). A rollout object listed several times
    (a deterministic model) is featurized once."""
    R, T = len(sim_rollouts), log_traj["x"].shape[0]
    if R != config.n_rollouts:
        raise ValueError(f"realism_score: expected {config.n_rollouts} rollouts (config.n_rollouts), got {R}")
    same = all(r["x"].shape == log_traj["x"].shape for r in sim_rollouts)
    if T != config.history_steps + config.future_steps or not same:
        raise ValueError(f"realism_score: trajectories must be [T, B, A] with T = {config.history_steps} + "
                         f"{config.future_steps}, got log {tuple(log_traj['x'].shape)}")
    cut = max(config.history_steps - 2, 0)  # the first scored step needs the two before it
    window = lambda traj: {k: traj[k][cut:] for k in ("x", "y", "yaw", "speed", "length", "width", "valid")}
    future = lambda feats: {k: v[config.history_steps - cut:] for k, v in feats.items()}
    cache = {}  # the same rollout object passed several times (a deterministic model) is computed once
    feats = lambda traj: cache.get(id(traj)) or cache.setdefault(
        id(traj), future(features(window(traj), bank, map_idx, agent_type, config, start_step=cut)))
    log_f = feats(log_traj)
    per_rollout = [feats(r) for r in sim_rollouts]
    sim_f = {k: torch.stack([f[k] for f in per_rollout]) for k in log_f}
    mask = scored_agents(log_traj, agent_type, config).expand(config.future_steps, -1, -1)
    table = log_likelihoods(sim_f, log_f, mask, config)
    meta = meta_metric(table, config)
    return (table, meta, (sim_f, log_f, mask)) if return_features else (table, meta)


def log_trajectory(batch, start: int = 0, steps: int | None = None) -> dict:
    """The logged trajectory of a ScenarioBatch as [T, B, A] tensors from log step `start`
    (`steps` steps, default to the end); boxes from the scenario's initial sizes."""
    log = batch.log[:, :, start:] if steps is None else batch.log[:, :, start:start + steps]  # [B, A, T, 4]
    T = log.shape[2]
    size = lambda k: batch.init[k].unsqueeze(0).expand(T, -1, -1)
    return {"x": log[..., 0].permute(2, 0, 1), "y": log[..., 1].permute(2, 0, 1), "yaw": log[..., 2].permute(2, 0, 1),
            "speed": log[..., 3].permute(2, 0, 1), "length": size("length"), "width": size("width"),
            "valid": (batch.log_valid[:, :, start:start + T] & batch.valid.unsqueeze(-1)).permute(2, 0, 1)}
