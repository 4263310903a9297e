"""Logged scenarios for evaluation: scenario files (or real logs read on the fly) with the
background traffic mode applied, as `drivesim simulate/evaluate --scenarios F --traffic M` run them.

`traffic` None keeps the modes a generated set records (and gives raw imported logs
`generate.DEFAULT_LOG_TRAFFIC`); a given mode changes the background agents only, a generated
event's agent keeps its own (`generate.apply_traffic`). Bad files are error lines in the returned
meta (`load_errors`), the others still load; a path that holds nothing loadable raises
ScenarioFileError and a mode that does not apply raises ScenarioError, both naming the cause.
"""

from __future__ import annotations

from drivesim.core.scenario import Scenario
from drivesim.events.generate import apply_traffic
from drivesim.io.scenario_file import load_scenarios


def logged_scenarios(path, traffic: str | None = None) -> tuple[list[Scenario], dict]:
    """(scenarios with `traffic` applied, meta: scenarios_from, traffic, scenario_hashes, load_errors)."""
    scenarios, errors = load_scenarios(path)
    logged = [s for s in scenarios if s.log is not None]
    scenarios = [apply_traffic(s, traffic) for s in scenarios]
    kept = ",".join(sorted({str(s.meta.get("traffic")) for s in scenarios if s.log is not None}))
    meta = {"scenarios_from": str(path), "traffic": (traffic or kept) if logged else "scripted/procedural",
            "scenario_hashes": {s.name: s.meta.get("content_hash", "") for s in scenarios}, "load_errors": errors}
    return scenarios, meta
