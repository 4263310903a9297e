"""Rule-based traffic: how simulated agents drive, and procedural traffic layouts.

- `reactive.py`: the batched lane geometry of agents (Frenet projection, leaders, successor
  lanes) and `ReactiveConfig`; `reference_leaders.py` is its plain-loop twin for tests.
- `control.py`: one reactive decision per agent per step (IDM speed, MOBIL lane change, pure
  pursuit steering), from one snapshot of the state.
- `idm.py`, `mobil.py`, `yielding.py`, `neighbours.py`: the car-following model, the lane-change
  rule, yielding at conflicts and crossings, the neighbour search they share.
- `log_modes.py`: how the non-ego agents of an imported log move (replay, reactive, hybrid ...).
- `procedural.py`: procedural scenarios (an ego route plus random vehicles, pedestrians, objects).
"""
