"""The policy registry: every way to name a driving policy, for the CLI, tools and the Python API.

`make_policy(spec, kwargs=None)` takes:
- a registered name (`POLICIES`: the built-in policies of `sim/policy.py` and the PDM expert,
  which outputs controls or a trajectory); `register(name, factory)` adds one;
- a trained checkpoint `path.pt`, found from the working directory, else under the project's
  `policies/` folder (so `policies/il_base.pt` and `il_base.pt` work from anywhere);
- a user's class: `package.module:Class` (imported with the working directory on the import
  path, as `python -m` would) or `path/to/file.py:Class` (that file loaded as a module), made as
  `Class(**kwargs)`. Keyword arguments can also be written in the spec as Python literals:
  `my_policies:Cautious(gap=2.0, name="slow")`.
A spec that names nothing is a `PolicySpecError` with what would have worked. The protocol a
class implements (vector, camera and trajectory policies) is in docs/policies.md.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Callable

from drivesim.sim.expert import PDMClosed
from drivesim.sim.policy import BUILTIN_POLICIES
from drivesim.core.checkpoint import CheckpointError
from drivesim.train.camera_net import FORMAT as CAMERA_FORMAT
from drivesim.train.camera_net import camera_policy_from_checkpoint
from drivesim.train.policy_net import FORMAT as POLICY_FORMAT
from drivesim.train.policy_net import policy_from_checkpoint, read_checkpoint

PROJECT_POLICIES = Path(__file__).resolve().parents[2] / "policies"  # the checkpoints this project trains


class PolicySpecError(ValueError):
    """A policy spec that names no policy, or a user's class that cannot be made."""


POLICIES: dict[str, Callable[[], object]] = {**BUILTIN_POLICIES, "pdm_expert": PDMClosed,
                                             "pdm_trajectory": lambda: PDMClosed(output="trajectory")}


def register(name: str, factory: Callable[[], object]) -> None:
    """Make `factory()` available as policy `name` (an error if the name is taken)."""
    if name in POLICIES:
        raise PolicySpecError(f"policy {name!r} is already registered")
    POLICIES[name] = factory


def make_policy(spec: str, kwargs: dict | None = None):
    """The policy `spec` names (see the module docstring); `kwargs` go to a user class's constructor."""
    spec = spec.strip()
    if spec.endswith(".pt"):
        return checkpoint_policy(checkpoint_path(spec))
    if spec in POLICIES:
        if kwargs:
            raise PolicySpecError(f"policy {spec!r} is built in and takes no arguments (got {sorted(kwargs)})")
        return POLICIES[spec]()
    if ":" in spec:
        target, spec_kwargs = split_call(spec)
        return user_policy(spec, load_class(target), {**spec_kwargs, **(kwargs or {})})
    raise PolicySpecError(f"unknown policy {spec!r}; built-in: {', '.join(sorted(POLICIES))} (or a .pt checkpoint, "
                          "module:Class or path/to/file.py:Class)")


def checkpoint_policy(path: Path):
    """The policy of a vector or camera policy checkpoint, read once; a CheckpointError (a
    ValueError, like PolicySpecError) names what is wrong."""
    if not path.is_file():
        raise PolicySpecError(f"policy checkpoint {str(path)!r}: no such file")
    state, card = read_checkpoint(path, (POLICY_FORMAT, CAMERA_FORMAT), ("config",))
    if card["format"] == CAMERA_FORMAT:  # it reads obs.cameras
        return camera_policy_from_checkpoint(path, state, card)
    if not isinstance(card.get("layout"), dict):
        raise CheckpointError(f"{path}: the card's 'layout' is a {type(card.get('layout')).__name__}, not a dict")
    return policy_from_checkpoint(path, state, card)


def split_specs(text: str) -> list[str]:
    """The policy specs of a comma-separated list, stripped; commas inside Class(...) arguments do not split."""
    specs, depth, part = [], 0, ""
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            specs.append(part)
            part = ""
        else:
            part += ch
    return [s.strip() for s in [*specs, part] if s.strip()]


def checkpoint_path(spec: str) -> Path:
    """`spec` from the working directory if it exists there, else under the project's policies/ folder."""
    path = Path(spec).expanduser()
    if path.is_file() or path.is_absolute():
        return path
    for candidate in (PROJECT_POLICIES / path, PROJECT_POLICIES / path.name):
        if candidate.is_file():
            return candidate
    return path  # checkpoint_policy says "no such file"


def split_call(spec: str) -> tuple[str, dict]:
    """('module:Class', {k: v}) from 'module:Class(k=v, ...)' (keyword literals only), or (spec, {})."""
    if not spec.endswith(")") or "(" not in spec:
        return spec, {}
    target, _, args = spec.partition("(")
    try:
        call = ast.parse(f"f({args}", mode="eval").body
        if call.args:
            raise ValueError("positional arguments: write them as name=value")
        return target.strip(), {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}
    except (SyntaxError, ValueError) as exc:
        raise PolicySpecError(f"policy {spec!r}: its arguments must be name=literal pairs, e.g. "
                              f"{target.strip()}(gap=2.0, name='slow') ({exc})") from None


def load_class(target: str):
    """The class `module:Class` or `path/to/file.py:Class` names; the working directory is on the import path."""
    where, _, attr = target.rpartition(":")
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser().resolve()
            if not path.is_file():
                raise ImportError(f"no such file {where!r}")
            module_spec = importlib.util.spec_from_file_location(f"drivesim_user_policy_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            cwd = os.getcwd()
            if cwd not in sys.path and "" not in sys.path:
                sys.path.insert(0, cwd)
            module = importlib.import_module(where)
        return getattr(module, attr)
    except (ImportError, AttributeError, SyntaxError) as exc:
        raise PolicySpecError(f"cannot load policy {target!r}: {exc}") from None


def user_policy(spec: str, cls, kwargs: dict | None = None):
    """An instance of a user's policy class, `cls(**kwargs)`; a clear error if it cannot be made."""
    kwargs = kwargs or {}
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        given = f"arguments {kwargs}" if kwargs else "no arguments"
        raise PolicySpecError(f"cannot create policy {spec!r} with {given} ({exc}); give its other arguments "
                              "defaults, or pass them as module:Class(name=value)") from None
    except ValueError:  # no signature to check (a builtin): just try
        pass
    try:
        policy = cls(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's __init__ may raise anything
        raise PolicySpecError(f"policy {spec!r} raised {type(exc).__name__} while being created: {exc}") from None
    if not callable(getattr(policy, "act", None)):
        raise PolicySpecError(f"{spec!r} is not a policy: it has no act(obs) method")
    return policy
