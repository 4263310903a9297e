"""Drivable area of imported real scenes against their logs (issue 15 item 1's table).

`drivable_table_rows(data_dir)` imports every shared real scene it finds (ScenarioNet nuScenes,
AV2 motion, CommonRoad) and returns one row per scene: the drivable area and the lane-polygon union
(m^2, `map.drivable_area`'s lane area: source lane polygons, buffered centerlines for lanes without
one), the closed road-edge rings used, and `metrics.drivable.log_drivable_summary` (share of ego,
vehicle and moving-vehicle logged steps on the drivable area; the ego's DAC). tools/drivable_table.py
prints it.
"""

from __future__ import annotations

from pathlib import Path

from shapely.ops import unary_union

from drivesim.metrics.drivable import log_drivable_summary


SOURCES = (("scenarionet", "scenarionet_nuscenes"), ("av2", "av2/motion"), ("commonroad", "commonroad_ngsim"))


def _sources(data: Path) -> list[tuple[str, Path]]:
    """(importer name, folder) of each real-scene folder present under `data`."""
    return [(name, data / folder) for name, folder in SOURCES if (data / folder).is_dir()]


def lane_union_area(scenario) -> float:
    """m^2 of the lane polygons' union: the importer's figure (meta drivable_summary) when given,
    else the union of the lanes' buffered centerlines."""
    summary = scenario.meta.get("drivable_summary") or {}
    if "lane_area" in summary:
        return float(summary["lane_area"])
    return float(unary_union([lane.polygon() for lane in scenario.road.lanes]).area)


def scene_row(scenario, bank=None) -> dict:
    """{scene, drivable_m2, lane_union_m2, ratio, rings, and `log_drivable_summary`'s keys}."""
    lane = lane_union_area(scenario)
    area = float(scenario.road.drivable.area)
    rings = (scenario.meta.get("drivable_summary") or {}).get("rings", 0)
    return {"scene": scenario.name, "drivable_m2": area, "lane_union_m2": lane, "ratio": area / max(lane, 1e-9),
            "rings": rings, **log_drivable_summary(scenario, bank)}


def drivable_table_rows(data_dir) -> list[dict]:
    """One `scene_row` per scene of every real-data folder found under data_dir."""
    from drivesim.io import importers

    return [scene_row(sc) for name, folder in _sources(Path(data_dir)) for sc in importers.load(name, folder)[0]]
