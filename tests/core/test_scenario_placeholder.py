"""core/scenario.py keeps no module-level state: the placeholder road of failed scenarios is a
cached constant (built once, on first use), not a list filled at run time."""

import drivesim.core.scenario as scenario_mod
from drivesim.core.scenario import ScenarioError, failed_scenario, placeholder_road


def test_failed_scenarios_share_one_placeholder_road():
    a, b = failed_scenario("a", "no map"), failed_scenario("b", "no map")
    assert a.road is b.road is placeholder_road()
    assert a.road.name == "unbuilt" and len(a.road.lanes) == 1
    assert placeholder_road.cache_info().currsize == 1
    try:
        a.validate()
    except ScenarioError as exc:
        assert "no map" in str(exc)
    else:
        raise AssertionError("a failed scenario must not validate")


def test_no_module_level_placeholder_list():
    assert not hasattr(scenario_mod, "_PLACEHOLDER")
    mutable = [k for k, v in vars(scenario_mod).items() if not k.startswith("__") and isinstance(v, (list, dict, set))]
    assert mutable == [], f"module-level mutable state in core/scenario.py: {mutable}"
