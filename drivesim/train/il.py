"""Imitation learning of the driving policy from the PDM-Closed-style expert (behaviour cloning,
then DAgger rounds), and fine-tuning an IL checkpoint by imitation on another scenario set.

1. Scenarios: the suite's groups drawn again with a seed of their own (the suite stays held
   out) and standing / slow-start variants of a share of them, generated rare events, the
   training split of the real scenes with reactive log traffic (il_data.py, il_variants.py).
2. Round 0: the expert drives them (with DART noise on the executed action, `dart_*`); every
   visited state is recorded with the expert's clean acceleration bin. Cross-entropy on the
   bin (label smoothing, braking bins weighted) for `epochs` epochs; samples of a fixed tenth
   of the scenarios are held out for validation.
3. DAgger rounds 1..R: the learner drives, taking the expert's action with probability
   beta^r at each step; the expert labels every visited state; the data are aggregated and
   training goes on for `dagger_epochs` epochs.
4. After each round, the greedy learner drives scenarios drawn with yet another seed (the
   expert once, for reference): success, collision rate, PDMS. The round with the best PDMS
   there is written as the policy (`select`).

The net does not see the ego's last acceleration (PolicyNetConfig.last_accel): a clone that sees
it copies it and brakes too late. Outputs in OUT: policy.pt + policy.json (the card: lineage,
data, config, metrics, training scenario names and hashes), curves.png, metrics.json; last.pt
(+ data.pt until the run finishes) let an interrupted run resume: rerun the same command. A
resume must have the same config, init and training scenarios (names and content hashes, kept in
last.pt), or it is refused naming what differs; `--overwrite` starts over. Every file is written
atomically (core.safe_io) and last.pt / data.pt load as plain data (core.checkpoint).

The config is `il_config.ILConfig`; the per-round closed-loop check and the curves are in il_eval.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from drivesim.core.checkpoint import CheckpointError, check_finite, expect_dict, load_checkpoint
from drivesim.core.config import config_to_dict
from drivesim.core.safe_io import OutputError, atomic_torch_save, atomic_write_text
from drivesim.core.run_log import RunLog
from drivesim.sim.expert import PDMClosed
from drivesim.train.il_config import ILConfig
from drivesim.train.il_data import (Demos, collect, is_validation, label_histogram, rare_scenarios, real_scenarios,
                                    scenario_hashes, suite_scenarios)
from drivesim.train.il_eval import closed_loop, eval_scenarios, plot_curves
from drivesim.train.il_variants import start_variants
from drivesim.train.policy_net import NetPolicy, PolicyNet, PolicyNetConfig, load_policy, save_policy, two_hot

STATE_VERSION = 1


@dataclass
class ILResult:
    policy_path: Path
    card: dict
    curve: list[dict]
    rounds: list[dict]


class Interrupted(Exception):
    """Raised by an `on_epoch` callback to stop a run (as an interruption would); rerun to resume."""


# ---------------------------------------------------------------------------- data
def training_scenarios(cfg: ILConfig, progress: bool = False):
    """(scenarios, provenance list) of the configured sources, each with its count and seconds:
    the suite draw (and start variants of `start_fraction` of it), rare events, the real scenes'
    training split (per source: scene names, counts, load time)."""
    scenarios, prov = [], []
    if cfg.suite != "none":
        t0 = time.perf_counter()
        s, p = suite_scenarios(cfg.suite, seed=1000 + cfg.seed, repeat=cfg.suite_repeat, progress=progress)
        v = start_variants(s, cfg.starts, cfg.start_fraction, seed=1000 + cfg.seed)
        if v:
            p["starts"] = {"speeds": list(cfg.starts), "fraction": cfg.start_fraction, "count": len(v)}
        scenarios, prov = scenarios + s + v, prov + [{**p, "seconds": round(time.perf_counter() - t0, 2)}]
    if cfg.rare:
        t0 = time.perf_counter()
        s, p = rare_scenarios(cfg.rare, cfg.rare_events, seed=1000 + cfg.seed, progress=progress)
        scenarios, prov = scenarios + s, prov + [{**p, "seconds": round(time.perf_counter() - t0, 2)}]
    if cfg.real:
        s, p = real_scenarios("train", cfg.real_sources, cfg.real_traffic)
        scenarios, prov = scenarios + s, prov + [p]
    if not scenarios:
        raise ValueError("no training scenarios (the only source was real scenes, and they are not there)")
    return scenarios, prov


# ---------------------------------------------------------------------------- training
def sample_weights(demos: Demos, bins, cfg: ILConfig) -> torch.Tensor:
    braking = torch.as_tensor(bins)[demos.label] <= cfg.brake_below + 1e-6
    return torch.where(braking, cfg.brake_weight, 1.0)


def bc_loss(net: PolicyNet, demos: Demos, weight: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted loss, accuracy) on a minibatch: cross-entropy of the acceleration head against
    the two-hot target of the expert's acceleration (smoothed), plus cross-entropy of the lateral
    head against the expert's lateral option (keep: the expert follows its route lane); accuracy:
    the top acceleration bin is the expert's nearest."""
    lon, lat, _ = net(demos.feats)
    target = two_hot(demos.accel, net.cfg.accel_bins) * (1 - smoothing) + smoothing / lon.shape[1]
    ce = -(target * torch.log_softmax(lon, -1)).sum(-1)
    keep = torch.zeros(len(demos.accel), dtype=torch.long, device=lat.device)
    ce = ce + F.cross_entropy(lat, keep, reduction="none", label_smoothing=smoothing)
    loss = (ce * weight).sum() / weight.sum()
    return loss, (lon.argmax(-1) == demos.label).float().mean()


def train_epoch(net, opt, demos: Demos, weight, cfg: ILConfig, gen: torch.Generator, where: str, deadline: float) -> dict:
    """One pass over `demos` in shuffled minibatches; a non-finite loss is an error."""
    net.train()
    order = torch.randperm(len(demos), generator=gen)
    tot, acc, n = 0.0, 0.0, 0
    for i in range(0, len(order), cfg.batch_size):
        idx = order[i : i + cfg.batch_size]
        loss, a = bc_loss(net, demos.take(idx), weight[idx], cfg.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"IL training diverged: loss {loss.item()} at {where}, minibatch {i // cfg.batch_size} "
                                     f"(lr {opt.param_groups[0]['lr']:g}); lower the learning rate or check the data for NaN")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        tot, acc, n = tot + loss.item() * len(idx), acc + a.item() * len(idx), n + len(idx)
        if time.monotonic() > deadline:
            break
    net.eval()
    return {"loss": tot / max(n, 1), "acc": acc / max(n, 1), "samples": n}


@torch.no_grad()
def evaluate_bc(net, demos: Demos, weight, cfg: ILConfig) -> dict:
    if len(demos) == 0:
        return {}
    tot, acc = 0.0, 0.0
    for i in range(0, len(demos), 4096):
        idx = torch.arange(i, min(i + 4096, len(demos)))
        loss, a = bc_loss(net, demos.take(idx), weight[idx], cfg.label_smoothing)
        tot, acc = tot + loss.item() * len(idx), acc + a.item() * len(idx)
    return {"val_loss": tot / len(demos), "val_acc": acc / len(demos)}


def _split(demos: Demos, cfg: ILConfig) -> tuple[Demos, Demos]:
    val = torch.tensor([is_validation(n, cfg.val_fraction) for n in demos.names], dtype=torch.bool)[demos.scenario]
    return demos.take((~val).nonzero().squeeze(1)), demos.take(val.nonzero().squeeze(1))


def _generator(cfg: ILConfig, round_index: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([cfg.seed, round_index, epoch]).generate_state(1)[0]))


# ---------------------------------------------------------------------------- the run
def _fresh_state(cfg: ILConfig, init: str | None) -> dict:
    return {"version": STATE_VERSION, "config": config_to_dict(cfg), "init": init, "round": 0, "collected": False,
            "epoch": 0, "curve": [], "rounds": [], "collect": [], "seconds": 0.0, "done": False, "expert_eval": None,
            "best": None}


def _check_resume(state, cfg: ILConfig, init: str | None, path: Path) -> None:
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or state.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: not the state of a drivesim IL run (version {STATE_VERSION}): use another --out, "
                         "or --overwrite to start over")
    free = ("minutes", "keep_data")  # may change between an interrupted run and its resumption
    mine = {k: v for k, v in config_to_dict(cfg).items() if k not in free}
    theirs = {k: v for k, v in state["config"].items() if k not in free}
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff or state.get("init") != init:
        raise ValueError(f"{path} belongs to a run with another config ({diff or ['init']}): "
                         "use another --out, or --overwrite to start over")


def _check_scenarios(state: dict, hashes: dict[str, str], path: Path) -> None:
    """A resumed run must train on the scenarios it started on (by name and content hash)."""
    old = state.get("scenario_hashes")
    if old is None:  # a run from before the hashes were recorded: record them now
        state["scenario_hashes"] = dict(hashes)
        return
    changed = sorted(n for n in set(old) & set(hashes) if old[n] != hashes[n])
    missing, new = sorted(set(old) - set(hashes)), sorted(set(hashes) - set(old))
    if changed or missing or new:
        show = lambda names: f"{names[:5]}" + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts = [f"{len(changed)} changed {show(changed)}" if changed else "",
                 f"{len(missing)} no longer there {show(missing)}" if missing else "",
                 f"{len(new)} new {show(new)}" if new else ""]
        raise ValueError(f"{path}: refusing to resume: the training scenarios differ from the ones this run started on "
                         f"({'; '.join(p for p in parts if p)}): use another --out, or --overwrite to start over")


def _initial_net(cfg: ILConfig, init: str | None) -> tuple[PolicyNet, dict | None]:
    if init is None:
        torch.manual_seed(cfg.seed)
        return PolicyNet(PolicyNetConfig(hidden=cfg.hidden)), None
    parent = load_policy(init, expect=PolicyNetConfig())
    return parent.net, parent.card


def train_il(cfg: ILConfig, out, init: str | None = None, name: str | None = None, progress: bool = True,
             on_epoch=None, overwrite: bool = False, scenarios: tuple[list, dict] | None = None) -> ILResult:
    """Run (or resume) imitation learning into the folder `out`; see the module doc.
    `init`: a policy checkpoint to fine-tune. `on_epoch(state)` is called after every epoch.
    `scenarios`: (scenarios, provenance) to imitate instead of the config's sources (e.g. the
    RL set, for supervised fine-tuning on the same data).
    A folder with a run in it resumes (same config, init and training scenarios, else an error);
    `overwrite` discards that run and starts over."""
    cfg.validate_config()
    torch.set_num_threads(1)
    if overwrite:
        for stale in ("last.pt", "data.pt"):
            (Path(out) / stale).unlink(missing_ok=True)
    run = _Run(cfg, Path(out), init, progress, on_epoch)
    scenarios, prov = scenarios if scenarios is not None else training_scenarios(cfg, progress)
    prov = prov if isinstance(prov, list) else [prov]
    _check_scenarios(run.state, scenario_hashes(scenarios), run.out / "last.pt")
    evals = eval_scenarios(cfg)
    state = run.state
    if state["expert_eval"] is None and evals:
        state["expert_eval"] = closed_loop(None, evals, cfg)
    with RunLog(run.out, "il") as run_log:  # history.jsonl (+ TensorBoard when installed), a resumed run's epochs first
        for row in state["curve"]:
            run_log.log(row["global_epoch"], row)
        run.run_log = run_log
        while not state["done"]:
            run.round(scenarios, evals)
    result = _finish(run.out, run.net, cfg, state, prov, scenarios, run.parent, init, name)
    if state.get("finished") and not cfg.keep_data:
        (run.out / "data.pt").unlink(missing_ok=True)  # last.pt alone is enough to write the outputs again
    return result


class _Run:
    """The state of one run: the net, its optimizer, the progress (`state`, saved to last.pt
    after every step that matters) and the aggregated demonstrations (data.pt)."""

    def __init__(self, cfg: ILConfig, out: Path, init: str | None, progress: bool, on_epoch):
        self.cfg, self.out, self.progress, self.on_epoch = cfg, out, progress, on_epoch
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
        self.t_start = time.monotonic()
        self.deadline = self.t_start + cfg.minutes * 60
        self.net, self.parent = _initial_net(cfg, init)
        self.bins = self.net.cfg.accel_bins
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr if init is None else cfg.finetune_lr,
                                    weight_decay=cfg.weight_decay)
        self.state = _fresh_state(cfg, init)
        self.demos = None
        self.run_log = None  # the RunLog train_il writes the epochs to
        if (out / "last.pt").exists():
            self._resume(init)
        self.t_prev = self.state["seconds"]
        self.net.eval()

    def _resume(self, init):
        path = self.out / "last.pt"
        blob = expect_dict(load_checkpoint(path, "IL run state"), path, "IL run state", ("state", "net", "opt"))
        _check_resume(blob["state"], self.cfg, init, path)
        state = self.state = blob["state"]
        try:
            check_finite(blob["net"], path, "IL run state")
            self.net.load_state_dict(blob["net"])
            self.opt.load_state_dict(blob["opt"])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            reason = str(exc).strip().split("\n")[0][:300]
            raise CheckpointError(f"{path}: the saved network or optimizer does not fit this run ({reason}): "
                                  "use another --out, or --overwrite to start over") from None
        state["done"] = state.get("finished", False)  # a run stopped by its budget goes on
        if self.progress:
            print(f"resuming {self.out}: round {state['round']}, {state['epoch']} epochs done in it"
                  + (" (finished: writing the outputs again)" if state["done"] else ""))
        if not state["done"] and (self.out / "data.pt").exists() and (state["collected"] or state["round"] > 0):
            demos = Demos.load(self.out / "data.pt")
            if not state["collected"]:  # interrupted between writing the data and the state
                demos = demos.take((demos.round < state["round"]).nonzero().squeeze(1))
            self.demos = demos

    def save(self) -> None:
        """last.pt, written atomically (a kill or a full disk leaves the previous one loadable)."""
        self.state["seconds"] = self.t_prev + time.monotonic() - self.t_start
        atomic_torch_save({"state": self.state, "net": self.net.state_dict(), "opt": self.opt.state_dict()},
                          self.out / "last.pt")

    def round(self, scenarios, evals) -> None:
        """Collect round r's data (if not yet), train its remaining epochs, check it in closed loop."""
        cfg, state, r = self.cfg, self.state, self.state["round"]
        if not state["collected"]:
            self.demos = _collect_round(r, scenarios, self.net, cfg, self.bins, self.demos, state, self.progress)
            self.demos.save(self.out / "data.pt")
            state["collected"] = True
            self.save()
        n_epochs = cfg.epochs if r == 0 else cfg.dagger_epochs
        self._epochs(r, n_epochs)
        out_of_time = time.monotonic() > self.deadline
        self._check(r, evals)
        state["finished"] = r >= cfg.dagger and state["epoch"] >= n_epochs
        if state["finished"] or out_of_time:
            state["done"] = True
            state["data_stats"] = _data_stats(self.demos, cfg, self.bins)
        else:
            state.update(round=r + 1, collected=False, epoch=0)
        self.save()

    def _epochs(self, r: int, n_epochs: int) -> None:
        cfg, state = self.cfg, self.state
        train, val = _split(self.demos, cfg)
        w_train, w_val = sample_weights(train, self.bins, cfg), sample_weights(val, self.bins, cfg)
        bar = tqdm(range(state["epoch"], n_epochs), desc=f"round {r} training", disable=not self.progress, leave=False)
        for e in bar:
            stats = train_epoch(self.net, self.opt, train, w_train, cfg, _generator(cfg, r, e), f"round {r}, epoch {e}",
                                self.deadline)
            stats.update(evaluate_bc(self.net, val, w_val, cfg))
            state["curve"].append({"round": r, "epoch": e, "global_epoch": len(state["curve"]), **stats})
            self.run_log.log(state["curve"][-1]["global_epoch"], state["curve"][-1])
            state["epoch"] = e + 1
            bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['acc']:.3f}")
            self.save()
            if self.on_epoch is not None:
                self.on_epoch(state)
            if time.monotonic() > self.deadline:
                break

    def _check(self, r: int, evals) -> None:
        """Closed loop on the fresh scenarios; remember the best round's weights."""
        state = self.state
        cl = closed_loop(self.net, evals, self.cfg, (state["expert_eval"] or {}).get("_progress"))
        cl.pop("_progress", None)
        state["rounds"] = [d for d in state["rounds"] if d["round"] != r]  # a resumed round is checked again
        state["rounds"].append({"round": r, "samples": len(self.demos), "epochs": state["epoch"], **cl})
        if cl and (state["best"] is None or cl["pdms"] > state["best"]["pdms"]):
            state["best"] = {"round": r, "pdms": cl["pdms"], "net": {k: v.clone() for k, v in self.net.state_dict().items()}}
        if self.progress and cl:
            print(f"round {r}: {len(self.demos)} samples, closed loop on {cl['n']} fresh scenarios: success "
                  f"{cl['success']:.3f}, collision rate {cl['collision_any']:.3f}, PDMS {cl['pdms']:.3f}")


def _data_stats(demos: Demos, cfg: ILConfig, bins) -> dict:
    train, val = _split(demos, cfg)
    return {"samples": len(demos), "train_samples": len(train), "val_samples": len(val),
            "label_histogram": label_histogram(demos, bins)}


def _collect_round(r, scenarios, net, cfg, bins, demos, state, progress):
    t0 = time.monotonic()
    learner = None if r == 0 else NetPolicy(net, name="learner")
    beta = 1.0 if r == 0 else cfg.beta ** r
    noise = cfg.dart if (r == 0 or cfg.dart_dagger) and cfg.dart.active else None
    new, table = collect(scenarios, cfg.expert, bins, learner=learner, beta=beta, seed=cfg.seed * 1000 + r, round_index=r,
                         batch_size=cfg.sim_batch, record_every=cfg.record_every, noise=noise,
                         desc=(f"round {r}: " + ("expert demonstrations" if r == 0 else f"DAgger, beta {beta:.2f}")) if progress else "")
    state["collect"].append({"round": r, "beta": beta, "samples": len(new), "seconds": round(time.monotonic() - t0, 1),
                             "dart": config_to_dict(noise) if noise is not None else None,
                             "driver_success": round(float(table["success"].mean()), 4),
                             "driver_collision_rate": round(float(table["collision_any"].mean()), 4)})
    return new if demos is None else Demos.cat([demos, new])


def _finish(out, net, cfg, state, prov, scenarios, parent, init, name) -> ILResult:
    bins = net.cfg.accel_bins
    kind = "il" if init is None else "il-finetune"
    chosen = state["rounds"][-1]["round"] if state["rounds"] else None
    if cfg.select == "best" and state.get("best") is not None:
        net.load_state_dict(state["best"]["net"])
        chosen = state["best"]["round"]
    own = scenario_hashes(scenarios)
    expert_eval = {k: v for k, v in (state["expert_eval"] or {}).items() if k != "_progress"}
    card = {
        "name": name or ("il" if init is None else "il_finetuned"), "kind": kind,
        "architecture": f"PolicyNet: shared MLP encoders of agents and lane pieces (masked max-pool), route and ego "
                        f"MLPs, trunk MLP, hidden {net.cfg.hidden}; {len(bins)} acceleration bins, pure-pursuit steering; "
                        f"{sum(p.numel() for p in net.parameters())} parameters",
        "train_config": config_to_dict(cfg), "seed": cfg.seed,
        "expert": {"name": PDMClosed.name, "config": config_to_dict(cfg.expert)},
        "data": {"sources": prov, "scenarios": len(scenarios), **state["data_stats"], "per_round": state["collect"],
                 "accel_bins": list(bins)},
        "training": {"epochs": len(state["curve"]), "finished": state.get("finished", False), "seconds": round(state["seconds"], 1),
                     "threads": torch.get_num_threads(), "torch": torch.__version__},
        "metrics": {"final": state["curve"][-1] if state["curve"] else {}, "rounds": state["rounds"], "expert_eval": expert_eval,
                    "selected_round": chosen, "selected": next((d for d in state["rounds"] if d["round"] == chosen), {})},
        "training_scenarios": {**((parent or {}).get("training_scenarios") or {}), **own},
    }
    if parent is not None:
        card["parent"] = {"path": Path(init).name, "name": parent.get("name"), "kind": parent.get("kind"),
                          "weights_sha256": parent.get("weights_sha256"), "data": (parent.get("data") or {}).get("sources")}
    card = json.loads(json.dumps(card, default=str))  # plain JSON types only: checkpoints load with weights_only
    path = save_policy(net, out / "policy.pt", card)
    plot_curves(state["curve"], state["rounds"], expert_eval, out / "curves.png")
    atomic_write_text(out / "metrics.json", json.dumps({"curve": state["curve"], "rounds": state["rounds"],
                                                        "collect": state["collect"], "expert_eval": expert_eval}, indent=1))
    return ILResult(path, json.loads(path.with_suffix(".json").read_text()), state["curve"], state["rounds"])


__all__ = ["ILConfig", "ILResult", "Interrupted", "train_il", "training_scenarios", "bc_loss"]
