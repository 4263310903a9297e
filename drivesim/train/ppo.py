"""PPO post-training of an imitation-learned driving policy inside the batched simulator.

Read top to bottom (cleanrl style): config, the rows, rollout collection with GAE, the PPO
update, the training loop (scenario choice, the held-out check and the curves figure live in
rl_extras.py; the run folder and checkpoints in ppo_checkpoint.py).

- Environments: the shared batched environment `sim.env.DriveEnv` with `DriveReward`
  (`DrivingRows`, a small adapter for the vocabulary actions). The training scenarios are tiled
  into B rows of one `ScenarioBatch` (each scenario the same number of times, about `num_envs`
  rows); a row that ends (collision, off-road, end of route, end of scenario) stops at the
  sub-step where it ends and restarts from its scenario's start on its own clock
  (`DriveEnv.restart`) at the next policy decision.
- Policy: the `PolicyNet` of policy_net.py over its trajectory vocabulary (a categorical
  acceleration x a categorical lateral option, sampled independently: log pi is the sum of the two
  heads', and so are the entropy and the KL to IL), deciding every `policy_every` simulation steps
  (the re-plan interval); in between the decision's trajectory is tracked by the simulator's
  controller (sim/trajectory.py) and the reward (reward.py) is summed over the steps. A row
  truncated at the end of its scenario bootstraps from the value of its last observation.
- Stability when fine-tuning from IL (docs/definitions.md "IL then RL", CaRL settings): GAE (γ 0.99,
  λ 0.95), clip 0.1, 4 epochs, target-KL early stop 0.015, Adam eps 1e-5, a small entropy bonus
  (lr 3e-4 rather than CaRL's 1e-5..5e-5: runs here last minutes, see PPOConfig.lr); a
  KL(π ‖ π_IL) penalty whose coefficient decays linearly over training; the first
  `value_warmup` updates train only the value head (the IL value head is untrained), with its
  own learning rate.
- Checkpoints every `checkpoint_every` updates (`checkpoint.pt`: weights, optimizer, update
  count, RNG, the simulator rows mid-episode) make `resume` continue exactly as an
  uninterrupted run; `policy.pt` + `policy.json` (the card: init checkpoint hash, training
  scenario names and hashes, config) are written beside it, with `curves.png` and
  `history.jsonl`. Seeded and deterministic on CPU; a non-finite loss is an error. A folder that
  already holds a run (checkpoint.pt or policy.pt) is continued with `--resume` or replaced with
  `--overwrite`, never overwritten silently; checkpoints are written atomically and load as
  plain data (core.checkpoint; ppo_checkpoint.py).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from drivesim.core.scenario import Scenario, ScenarioBatch
from drivesim.core.config import ConfigError, config_to_dict
from drivesim.core.run_log import RunLog
from drivesim.core.safe_io import OutputError
from drivesim.io.scenario_file import scenario_hash
from drivesim.sim.env import DriveEnv
from drivesim.sim.observation import observe
from drivesim.sim.trajectory import Trajectory
from drivesim.train.ppo_checkpoint import check_output_folder, file_sha256, resume_checkpoint, save_checkpoint
from drivesim.train.policy_net import PolicyNet, entropy, features, load_policy, save_policy
from drivesim.train.vocabulary import lateral_targets, plan, to_ego_poses
from drivesim.train.reward import DriveReward, RewardConfig
from drivesim.train.rl_extras import plot_curves


@dataclass(frozen=True)
class PPOConfig:
    seed: int = 0
    num_envs: int = 256  # simulator rows (scenarios tiled to about this many)
    num_steps: int = 16  # policy decisions per row per update
    policy_every: int = 5  # simulation steps (0.1 s) per decision: the vocabulary re-plans at 2 Hz (NAVSIM's rate)
    updates: int = 40  # 1.3 M env-steps at the default sizes
    minutes: float | None = None  # wall-clock cap: training stops early after the update that passes it
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.1
    epochs: int = 2  # (CaRL: 4) the update is the dearest part per sample; 2 halve it, the KL early stop rarely waits
    minibatch_size: int = 2048  # samples per gradient step (larger ones run slower per sample on CPU)
    # policy and trunk; CaRL fine-tunes at 1e-5..5e-5 over far longer runs. 40 updates from an IL base of the
    # pipeline's config on its rl_rare set, greedy on 30 held-out events of each type and the nominal suite:
    # lr 3e-4 with KL 0.1 -> 0.01 (from an earlier base) drifted from IL (KL 0.93), nominal PDMS -0.04; 3e-4 with KL
    # 0.5 -> 0.2: nominal success 0.938 -> 0.922, PDMS -0.044; 1e-4 with 0.2 -> 0.05: every rare type 1.0,
    # nominal success 0.938 -> 0.953, PDMS -0.021, comfort -0.03
    lr: float = 1e-4
    value_lr: float = 1e-3  # value head (fresh on an IL checkpoint)
    adam_eps: float = 1e-5
    ent_coef: float = 0.001
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = 0.015
    kl_il_coef: float = 0.2  # KL(pi || pi_IL) penalty (both heads) at the start ...
    kl_il_final: float = 0.05  # ... decaying linearly to this at the end
    value_warmup: int = 3  # first updates train only the value head
    reward_scale: float = 0.1  # rewards (~1 per step at the speed limit) times this for the value targets
    checkpoint_every: int = 10
    device: str = "cpu"
    reward: RewardConfig = field(default_factory=RewardConfig)

    def validate_config(self, where: str = "ppo") -> None:
        positive = ("num_envs", "num_steps", "policy_every", "epochs", "minibatch_size", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.updates < 0 or (self.minutes is not None and self.minutes <= 0):
            raise ConfigError(f"{where}: updates must be >= 0 and minutes > 0")
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1 and 0 < self.clip < 1):
            raise ConfigError(f"{where}: need 0 < gamma <= 1, 0 <= gae_lambda <= 1, 0 < clip < 1")
        if min(self.lr, self.value_lr, self.adam_eps, self.reward_scale) <= 0:
            raise ConfigError(f"{where}: lr, value_lr, adam_eps and reward_scale must be > 0")


# ----------------------------------------------------------------------------- environment
def tile_rows(scenarios: list[Scenario], num_envs: int) -> list[Scenario]:
    """The simulator rows: every scenario the same number of times, about num_envs rows."""
    copies = max(1, round(num_envs / len(scenarios)))
    return [s for _ in range(copies) for s in scenarios]


class DrivingRows:
    """B simulator rows over tiled scenarios: the shared `sim.env.DriveEnv` with `DriveReward`;
    `step` plans one vocabulary action (acceleration bin, lateral option) and tracks it for k steps."""

    def __init__(self, scenarios: list[Scenario], net_cfg, cfg: PPOConfig, tile: bool = True):
        rows = tile_rows(scenarios, cfg.num_envs) if tile else scenarios
        self.batch = ScenarioBatch.build(rows, device=cfg.device)
        self.B = self.batch.batch_size
        self.env = DriveEnv(self.batch, DriveReward(self.batch, cfg.reward))
        self.net_cfg = net_cfg
        self.init_feats, self.init_ctx = self.observe(self.env.initial)

    @property
    def state(self):
        return self.env.state

    @property
    def ep_return(self) -> torch.Tensor:  # [B] unscaled reward of the running episode
        return self.env.episode_return

    @property
    def ep_len(self) -> torch.Tensor:  # [B] simulation steps of the running episode
        return self.env.state.row_step

    def observe(self, state=None):
        """(features dict with the lateral mask, context {d0, targets} [B], [B, L] for the plans) of
        `state` (default: the current one)."""
        obs = observe(self.state if state is None else state, self.batch, self.net_cfg.obs)
        d0, targets, allowed = lateral_targets(obs, self.net_cfg.vocab)
        return {**features(obs), "lat_mask": allowed}, {"d0": d0, "targets": targets}

    def plan(self, accel: torch.Tensor, option: torch.Tensor, ctx: dict) -> Trajectory:
        """The vocabulary trajectory (ego frame) of acceleration accel [B] towards lateral option [B]
        (indices into ctx["targets"] [B, L]) from the current state."""
        target = ctx["targets"].gather(1, option.unsqueeze(1)).squeeze(1)
        p = plan(observe(self.state, self.batch, self.net_cfg.obs), accel, target, ctx["d0"], self.net_cfg.vocab)
        return Trajectory(to_ego_poses(p, self.state.xy[:, 0], self.state.yaw[:, 0]), self.net_cfg.vocab.plan_dt)

    def step(self, accel: torch.Tensor, option: torch.Tensor, ctx: dict, k: int) -> dict[str, torch.Tensor]:
        """Track the `plan` of (accel, option) for k steps (`DriveEnv.step_trajectory`: a row stops
        where its episode ends); reward [B] summed, the episode flags [B] OR-ed over the steps."""
        out = self.env.step_trajectory(self.plan(accel, option, ctx), k)
        return {"reward": out.reward, "terminated": out.terminated, "truncated": out.truncated, **out.events}

    def run_steps(self, net, il_net, noise, cfg) -> dict:
        return run_steps(self, net, il_net, noise, cfg)

    def restart(self, rows: torch.Tensor) -> None:
        self.env.restart(rows)

    def state_dict(self) -> dict:
        return self.env.state_dict()

    def load_state_dict(self, d: dict) -> None:
        if "ray_shards" in d:
            raise ValueError(f"this checkpoint was written by {len(d['bounds'])} Ray workers; resume with --backend ray "
                             f"--workers {len(d['bounds'])}")
        if "ep_len" in d:  # written before sim.env: saved at a decision, after the restarts, so no row was done
            d = {"state": d["state"], "reward": d["reward"], "episode_return": d["ep_return"],
                 "done": torch.zeros_like(d["ep_return"], dtype=torch.bool)}
        self.env.load_state_dict(d)


def _rows(f: dict, rows) -> dict:
    return {k: v[rows] for k, v in f.items()}


def _merge(f: dict, init: dict, rows: torch.Tensor) -> dict:
    return {k: torch.where(rows.view(-1, *([1] * (v.dim() - 1))), init[k], v) for k, v in f.items()}


def draw_noise(gen: torch.Generator, steps: int, rows: int, bins: int) -> torch.Tensor:
    """Uniform noise [steps, rows, bins] for Gumbel-max action sampling, drawn up front from the
    CPU generator so that the rows can be split across workers and still get the same samples."""
    return torch.rand((steps, rows, bins), generator=gen).clamp_(1e-12, 1.0 - 1e-7)


def sample_actions(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Categorical samples [B] by the Gumbel-max trick with the uniform noise u [B, bins]."""
    return (logits - torch.log(-torch.log(u.to(logits.device)))).argmax(dim=-1)


# ----------------------------------------------------------------------------- rollout + GAE
def head_sizes(net: PolicyNet) -> tuple[int, int]:
    return len(net.cfg.accel_bins), len(net.cfg.vocab.lateral)


def log_probs(net: PolicyNet, feats: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log-probabilities of both heads concatenated [B, K + L], value [B], logits [B, K + L])."""
    lon, lat, value = net(feats)
    return torch.cat([torch.log_softmax(lon, -1), torch.log_softmax(lat, -1)], -1), value, torch.cat([lon, lat], -1)


def joint(logp_all: torch.Tensor, action: torch.Tensor, K: int) -> torch.Tensor:
    """log pi(action) [B] of the decoupled heads: log p(accel bin) + log p(lateral option)."""
    return logp_all[:, :K].gather(1, action[:, :1])[:, 0] + logp_all[:, K:].gather(1, action[:, 1:])[:, 0]


def kl(logp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """KL(p || ref) [B] of the decoupled heads (the sum of both heads' KLs), from log-probs [B, K + L]."""
    return (logp.exp() * (logp - ref)).sum(-1)


@torch.no_grad()
def collect(env, net: PolicyNet, il_net: PolicyNet, gen: torch.Generator, cfg: PPOConfig):
    """num_steps decisions of every row: (flat training batch, rollout statistics). `env` is a
    DrivingRows or another holder of rows with the same `run_steps` (the Ray actors)."""
    noise = draw_noise(gen, cfg.num_steps, env.B, sum(head_sizes(net)))
    raw = env.run_steps(net, il_net, noise, cfg)
    return advantages(raw, cfg), rollout_stats(raw, cfg)


@torch.no_grad()
def run_steps(env: DrivingRows, net: PolicyNet, il_net: PolicyNet, noise: torch.Tensor, cfg: PPOConfig) -> dict:
    """The rows' side of `collect`: num_steps decisions of each row with the noise [T, B, K + L];
    per-step tensors stacked to [T, B, ...], the value of the last observation, finished episodes."""
    T = cfg.num_steps
    K, _ = head_sizes(net)
    bins = torch.tensor(net.cfg.accel_bins, device=env.batch.device)
    feats, ctx = env.observe()
    store = {k: [] for k in ("feats", "action", "logp", "value", "il_logp", "reward", "done", "kl_il")}
    episodes = {k: [] for k in ("return", "length", "collision", "offroad", "success")}
    for t in range(T):
        logp_all, value, logits = log_probs(net, feats)
        il_logp = log_probs(il_net, feats)[0]
        action = torch.stack([sample_actions(logits[:, :K], noise[t, :, :K]), sample_actions(logits[:, K:], noise[t, :, K:])], -1)
        r = env.step(bins[action[:, 0]], action[:, 1], ctx, cfg.policy_every)
        next_feats, next_ctx = env.observe()
        reward = r["reward"] * cfg.reward_scale
        if bool(r["truncated"].any()):  # time limit, not a terminal state: bootstrap from the last observation
            reward[r["truncated"]] += cfg.gamma * net(_rows(next_feats, r["truncated"]))[2]
        done = r["terminated"] | r["truncated"]
        if bool(done.any()):
            episodes["return"] += env.ep_return[done].tolist()
            episodes["length"] += env.ep_len[done].tolist()
            for name in ("collision", "offroad"):
                episodes[name] += r[name][done].float().tolist()
            episodes["success"] += (~(r["collision"] | r["offroad"]))[done].float().tolist()
            env.restart(done)
            next_feats = _merge(next_feats, env.init_feats, done)
            next_ctx = _merge(next_ctx, env.init_ctx, done)
        for k, v in (("feats", feats), ("action", action), ("logp", joint(logp_all, action, K)),
                     ("value", value), ("il_logp", il_logp), ("reward", reward), ("done", done.float()),
                     ("kl_il", kl(logp_all, il_logp))):
            store[k].append(v)
        feats, ctx = next_feats, next_ctx
    raw = {k: torch.stack(v) for k, v in store.items() if k != "feats"}
    raw["feats"] = {k: torch.stack([f[k] for f in store["feats"]]) for k in feats}
    return {**raw, "next_value": net(feats)[2], "episodes": episodes}


def concat_rows(parts: list[dict]) -> dict:
    """`run_steps` outputs of contiguous slices of the rows, joined back along the row axis."""
    out = {k: torch.cat([p[k] for p in parts], dim=1) for k in parts[0] if k not in ("feats", "next_value", "episodes")}
    out["feats"] = {k: torch.cat([p["feats"][k] for p in parts], dim=1) for k in parts[0]["feats"]}
    out["next_value"] = torch.cat([p["next_value"] for p in parts])
    out["episodes"] = {k: [x for p in parts for x in p["episodes"][k]] for k in parts[0]["episodes"]}
    return out


def advantages(raw: dict, cfg: PPOConfig) -> dict:
    """GAE over the [T, B] rollout; the flat training batch (time-major)."""
    T, B = raw["reward"].shape
    values, rewards, dones, next_value = raw["value"], raw["reward"], raw["done"], raw["next_value"]
    adv = torch.zeros_like(rewards)
    last = torch.zeros(B, device=rewards.device)
    for t in reversed(range(T)):
        nv = next_value if t == T - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + cfg.gamma * nv * nonterminal - values[t]
        last = delta + cfg.gamma * cfg.gae_lambda * nonterminal * last
        adv[t] = last
    flat = lambda v: v.flatten(0, 1)
    return {"feats": {k: flat(v) for k, v in raw["feats"].items()}, "action": flat(raw["action"]), "logp": flat(raw["logp"]),
            "il_logp": flat(raw["il_logp"]), "value": flat(values), "adv": flat(adv), "ret": flat(adv + values)}


def rollout_stats(raw: dict, cfg: PPOConfig) -> dict:
    T, B = raw["reward"].shape
    return {"kl_il": float(raw["kl_il"].mean()), "episodes": raw["episodes"], "env_steps": T * B * cfg.policy_every,
            "mean_reward": float(raw["reward"].mean() / cfg.reward_scale)}


# ----------------------------------------------------------------------------- PPO update
def policy_parameters(net: PolicyNet) -> list:
    return [p for n, p in net.named_parameters() if not n.startswith("v.")]


def make_optimizer(net: PolicyNet, cfg: PPOConfig) -> torch.optim.Adam:
    return torch.optim.Adam([{"params": policy_parameters(net), "lr": cfg.lr},
                             {"params": list(net.v.parameters()), "lr": cfg.value_lr}], eps=cfg.adam_eps)


def ppo_update(net: PolicyNet, opt, data: dict, gen: torch.Generator, cfg: PPOConfig, kl_coef: float,
               value_only: bool = False, update: int = 0) -> dict:
    """Clipped PPO on one rollout; `value_only` trains the value head alone (policy frozen)."""
    N = data["action"].shape[0]
    K, _ = head_sizes(net)
    mb = -(-N // -(-N // cfg.minibatch_size))  # equal minibatches of at most minibatch_size
    for p in policy_parameters(net):
        p.requires_grad_(not value_only)
    log = {"pg_loss": [], "value_loss": [], "entropy": [], "approx_kl": [], "clipfrac": [], "kl_il_loss": []}
    stop = False
    try:
        for epoch in range(cfg.epochs):
            perm = torch.randperm(N, generator=gen).to(data["action"].device)
            for start in range(0, N, mb):
                idx = perm[start : start + mb]
                logp_all, value, logits = log_probs(net, _rows(data["feats"], idx))
                logratio = joint(logp_all, data["action"][idx], K) - data["logp"][idx]
                ratio = logratio.exp()
                adv = data["adv"][idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8) if len(idx) > 1 else adv
                pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()
                v_loss = 0.5 * (value - data["ret"][idx]).pow(2).mean()
                ent = (entropy(logits[:, :K]) + entropy(logits[:, K:])).mean()
                kl_il = kl(logp_all, data["il_logp"][idx]).mean()
                loss = cfg.vf_coef * v_loss if value_only else pg - cfg.ent_coef * ent + cfg.vf_coef * v_loss + kl_coef * kl_il
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"PPO update {update}, epoch {epoch}: non-finite loss {loss.item()} (policy {pg.item():.4g}, "
                        f"value {v_loss.item():.4g}, entropy {ent.item():.4g}, KL to IL {kl_il.item():.4g}); "
                        f"try a lower lr/value_lr or reward_scale, or resume from the last checkpoint")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.grad is not None], cfg.max_grad_norm)
                opt.step()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean().item()
                    for k, v in (("pg_loss", pg.item()), ("value_loss", v_loss.item()), ("entropy", ent.item()),
                                 ("approx_kl", approx_kl), ("kl_il_loss", kl_il.item()),
                                 ("clipfrac", ((ratio - 1).abs() > cfg.clip).float().mean().item())):
                        log[k].append(v)
                if not value_only and cfg.target_kl is not None and approx_kl > cfg.target_kl:
                    stop = True
                    break
            if stop:
                break
    finally:
        for p in policy_parameters(net):
            p.requires_grad_(True)
    out = {k: float(np.mean(v)) if v else float("nan") for k, v in log.items()}
    out["epochs"] = epoch + 1
    out["early_stop"] = stop
    return out


# ----------------------------------------------------------------------------- training loop
@dataclass
class RLResult:
    policy_path: Path
    card: dict
    history: list[dict]


def train_rl(scenarios: list[Scenario], init, out, cfg: PPOConfig | None = None, resume: bool = False,
             show_progress: bool = True, source: dict | None = None, on_update=None, rollouts=None,
             overwrite: bool = False) -> RLResult:
    """PPO from the IL checkpoint `init` on `scenarios`; artifacts in `out` (see the module doc).
    `on_update(row)` is called with each update's history row, after any checkpoint.
    `rollouts(rows, il_net, cfg)` makes the rollout collector (e.g. Ray actors, see
    `cli_train.rollout_actors`) with the learner here; None: `DrivingRows` in this process. The
    same seed gives the same updates either way. A folder that already holds a run needs `resume` or
    `overwrite` (check_output_folder)."""
    cfg = cfg or PPOConfig()
    out = Path(out)
    check_output_folder(out, resume, overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    il = load_policy(init)
    il_net = il.net.to(cfg.device).eval()
    for p in il_net.parameters():
        p.requires_grad_(False)
    net = copy.deepcopy(il_net).train()
    for p in net.parameters():
        p.requires_grad_(True)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if rollouts is None:
        env = DrivingRows(scenarios, net.cfg, cfg)
    else:
        env = rollouts(tile_rows(scenarios, cfg.num_envs), il_net, cfg)
    opt = make_optimizer(net, cfg)
    hashes = [s.meta.get("content_hash") or scenario_hash(s) for s in scenarios]
    meta = {"config": config_to_dict(cfg), "scenario_hashes": hashes, "init_weights": il.card.get("weights_sha256")}
    update, elapsed, history = 0, 0.0, []
    ckpt = out / "checkpoint.pt"
    if resume:
        update, elapsed, history = resume_checkpoint(ckpt, net, opt, gen, env, meta, cfg.device)
    t0 = time.perf_counter() - elapsed
    time_up = lambda: cfg.minutes is not None and time.perf_counter() - t0 >= 60 * cfg.minutes
    run_log = RunLog(out, "rl")  # history.jsonl as training goes (+ TensorBoard when installed)
    for h in history:  # a resumed run's earlier updates first
        run_log.log(h["update"], h)
    bar = tqdm(total=cfg.updates, initial=update, desc="ppo", unit="update", disable=not show_progress)
    try:
        while update < cfg.updates and not time_up():
            kl_coef = cfg.kl_il_coef + (cfg.kl_il_final - cfg.kl_il_coef) * min(1.0, update / max(1, cfg.updates))
            t_roll = time.perf_counter()
            data, stats = collect(env, net, il_net, gen, cfg)
            t_upd = time.perf_counter()
            log = ppo_update(net, opt, data, gen, cfg, kl_coef, value_only=update < cfg.value_warmup, update=update)
            t_end = time.perf_counter()
            update += 1
            history.append(_history_row(update, stats, log, kl_coef, t_upd - t_roll, t_end - t_upd, t_end - t0, data))
            run_log.log(update, history[-1])
            bar.update(1)
            h = history[-1]
            bar.set_postfix(ret=f"{h['episode_return']:.1f}", coll=f"{h['collision_rate']:.2f}", kl_il=f"{h['kl_il']:.3f}",
                            sps=f"{h['env_steps_per_s']:.0f}")
            if update % cfg.checkpoint_every == 0 or update >= cfg.updates or time_up():
                save_checkpoint(ckpt, net, opt, gen, env, update, time.perf_counter() - t0, history, meta)
            if on_update is not None:
                on_update(history[-1])
    finally:
        bar.close()
        run_log.close()
    if rollouts is not None:
        env.close()
    return _finish(net, out, cfg, il, init, scenarios, hashes, history, update, time.perf_counter() - t0, source)


def _history_row(update, stats, log, kl_coef, t_roll, t_upd, wall, data) -> dict:
    ep = stats["episodes"]
    mean = lambda k: float(np.mean(ep[k])) if ep[k] else float("nan")
    return {"update": update, "episodes": len(ep["return"]), "episode_return": mean("return"), "episode_length": mean("length"),
            "success_rate": mean("success"), "collision_rate": mean("collision"), "offroad_rate": mean("offroad"),
            "kl_il": stats["kl_il"], "kl_coef": kl_coef, "mean_reward": stats["mean_reward"], **log,
            "env_steps": stats["env_steps"], "rollout_s": t_roll, "update_s": t_upd,
            "env_steps_per_s": stats["env_steps"] / (t_roll + t_upd), "wall_s": wall,
            "explained_variance": float(1 - (data["ret"] - data["value"]).var() / data["ret"].var().clamp(min=1e-8))}


def _finish(net, out, cfg, il, init, scenarios, hashes, history, update, wall, source) -> RLResult:
    done = [h for h in history if h["episodes"]]
    last = done[-max(1, len(done) // 5):] if done else []  # the last fifth of the updates
    avg = lambda k: float(np.mean([h[k] for h in last])) if last else float("nan")
    il_card = il.card
    card = {"name": f"rl-{Path(out).name}", "kind": "rl-ppo",
            "init": {"path": Path(init).name, "file_sha256": file_sha256(init), "weights_sha256": il_card.get("weights_sha256"),
                     "name": il_card.get("name"), "kind": il_card.get("kind")},
            "training": {"updates": update, "env_steps": int(sum(h["env_steps"] for h in history)),
                         "seconds": round(wall, 1), "finished": update >= cfg.updates,
                         "env_steps_per_s": round(float(np.mean([h["env_steps_per_s"] for h in history])), 1) if history else 0.0,
                         "last_fifth": {k: avg(k) for k in ("episode_return", "success_rate", "collision_rate",
                                                            "offroad_rate", "kl_il")}},
            "rl_scenarios": {**(source or {}), "names": [s.name for s in scenarios], "hashes": hashes},
            # lineage: every scenario this policy was trained on, the IL data included (for overlap warnings)
            "training_scenarios": {**(il_card.get("training_scenarios") or {}), **dict(zip([s.name for s in scenarios], hashes))},
            "ppo_config": config_to_dict(cfg)}
    path = save_policy(net, out / "policy.pt", card)
    if history:
        plot_curves(history, out / "curves.png", f"PPO from {Path(init).name}: {len(scenarios)} scenarios, seed {cfg.seed}")
    return RLResult(path, json.loads(path.with_suffix(".json").read_text()), history)
