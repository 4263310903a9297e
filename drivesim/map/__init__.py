from drivesim.map.bank import MapBank
from drivesim.map.builders import MAP_TYPES, build_map
from drivesim.map.road import Lane, MapError, RoadMap

__all__ = ["MAP_TYPES", "Lane", "MapBank", "MapError", "RoadMap", "build_map"]
