"""PPO run folders and checkpoints (train/ppo.py): the output-folder guard, the atomic
checkpoint write and the checks and restore of a resume.

`checkpoint.pt` holds the weights, the optimizer, the update count, the RNG and the rollout
rows mid-episode (`DrivingRows.state_dict`, or the Ray actors' shards), so that a resumed run
continues exactly as an uninterrupted one. It is written atomically (a kill or a full disk
leaves the previous one loadable) and loads as plain data (core.checkpoint): a crafted file
never runs code. A resume refuses a checkpoint of other scenarios, another IL init or another
config (only RESUMABLE_KEYS may change).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from drivesim.core.checkpoint import CheckpointError, check_finite, expect_dict, load_checkpoint
from drivesim.core.safe_io import atomic_torch_save

RESUMABLE_KEYS = ("updates", "minutes", "checkpoint_every")  # config keys a resumed run may change
BLOB_KEYS = ("net", "opt", "gen", "update", "elapsed", "env", "history", "meta")


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _comparable(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in RESUMABLE_KEYS}


def check_output_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """A folder that already holds a run (checkpoint.pt or policy.pt) is continued with `resume`,
    replaced with `overwrite`, and otherwise refused: a new run never silently overwrites one."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run in the folder, or replace it")
    found = [n for n in ("checkpoint.pt", "policy.pt") if (out / n).exists()]
    if found and not resume and not overwrite:
        raise ValueError(f"{out} already holds a run ({', '.join(found)}): --resume to continue it, --overwrite to "
                         "replace it, or another --out")


def save_checkpoint(path: Path, net, opt, gen, env, update: int, elapsed: float, history: list, meta: dict):
    """OUT/checkpoint.pt, written atomically; `env` is the rows' holder (its `state_dict`)."""
    blob = {"net": net.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "update": update, "elapsed": elapsed,
            "env": env.state_dict(), "history": history, "meta": meta}
    atomic_torch_save(blob, path)


def resume_checkpoint(ckpt: Path, net, opt, gen, env, meta: dict, device: str) -> tuple[int, float, list]:
    """Restore net, opt, gen and env from `ckpt` after checking that it is a run of the same
    scenarios, IL init and config as `meta`; (update, elapsed seconds, history)."""
    if not ckpt.exists():
        raise FileNotFoundError(f"{ckpt}: no checkpoint to resume from")
    blob = expect_dict(load_checkpoint(ckpt, "RL checkpoint", map_location=device), ckpt, "RL checkpoint", BLOB_KEYS)
    old = blob["meta"]
    if not isinstance(old, dict) or not {"scenario_hashes", "init_weights", "config"} <= set(old):
        raise CheckpointError(f"{ckpt}: not a drivesim RL checkpoint (its meta lacks scenario_hashes/init_weights/config)")
    if old["scenario_hashes"] != meta["scenario_hashes"] or old["init_weights"] != meta["init_weights"]:
        raise ValueError(f"{ckpt}: was trained on other scenarios or from another IL checkpoint; resume with the same ones")
    if _comparable(old["config"]) != _comparable(meta["config"]):
        diff = sorted(k for k in _comparable(meta["config"]) if old["config"].get(k) != meta["config"][k])
        raise ValueError(f"{ckpt}: config differs in {diff}; only {list(RESUMABLE_KEYS)} may change on resume")
    try:
        check_finite(blob["net"], ckpt, "RL checkpoint")
        net.load_state_dict(blob["net"])
        opt.load_state_dict(blob["opt"])
        gen.set_state(blob["gen"].cpu())
        env.load_state_dict(blob["env"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        reason = str(exc).strip().split("\n")[0][:300]
        raise CheckpointError(f"{ckpt}: the saved state does not fit this run ({type(exc).__name__}: {reason})") from None
    return blob["update"], blob["elapsed"], blob["history"]
