"""The policy registry: every way to name a driving policy, for the CLI, tools and the Python API.

`make_policy(spec)` takes a registered name (`POLICIES`: the built-in policies of `sim/policy.py`
and the PDM expert, which outputs controls or a trajectory), a trained checkpoint (`path.pt`), or
`package.module:ClassName` (a user's class, made with no arguments). `register(name, factory)`
adds a name. A spec that names nothing is a `PolicySpecError` with what would have worked.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from drivesim.sim.expert import PDMClosed
from drivesim.sim.policy import BUILTIN_POLICIES
from drivesim.train.policy_net import policy_from_spec


class PolicySpecError(ValueError):
    """A policy spec that names no policy, or a user's class that cannot be made."""


POLICIES: dict[str, Callable[[], object]] = {**BUILTIN_POLICIES, "pdm_expert": PDMClosed,
                                             "pdm_trajectory": lambda: PDMClosed(output="trajectory")}


def register(name: str, factory: Callable[[], object]) -> None:
    """Make `factory()` available as policy `name` (an error if the name is taken)."""
    if name in POLICIES:
        raise PolicySpecError(f"policy {name!r} is already registered")
    POLICIES[name] = factory


def make_policy(spec: str):
    """A registered policy by name, a trained checkpoint (`path.pt`), or `package.module:ClassName`."""
    net = policy_from_spec(spec)  # ValueError (a PolicySpecError's base) for a bad checkpoint
    if net is not None:
        return net
    if spec in POLICIES:
        return POLICIES[spec]()
    if ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise PolicySpecError(f"cannot load policy {spec!r}: {exc}") from None
        return user_policy(spec, cls)
    raise PolicySpecError(f"unknown policy {spec!r}; built-in: {', '.join(sorted(POLICIES))} (or a .pt checkpoint, "
                          "or module:Class)")


def user_policy(spec: str, cls):
    """An instance of a user's policy class (made with no arguments); a clear error if it cannot be made."""
    try:
        inspect.signature(cls).bind()
    except TypeError as exc:
        raise PolicySpecError(f"cannot create policy {spec!r} with no arguments ({exc}); a policy class is "
                              "made as Class(): give its arguments defaults") from None
    except ValueError:  # no signature to check (a builtin): just try
        pass
    try:
        policy = cls()
    except Exception as exc:  # noqa: BLE001 - the user's __init__ may raise anything
        raise PolicySpecError(f"policy {spec!r} raised {type(exc).__name__} while being created: {exc}") from None
    if not callable(getattr(policy, "act", None)):
        raise PolicySpecError(f"{spec!r} is not a policy: it has no act(obs) method")
    return policy
