"""The learned traffic model: a small policy over agent tokens that drives non-ego agents.

- `tokens.py`: per-agent features (self, lane, neighbours) from a `SimState`.
- `model.py`: `TrafficModel` (the network), `LearnedTraffic` (the behaviour handed to
  `Simulator(batch, behavior=...)`), checkpoint load/save.
- `data.py`: training samples from real logs and procedural scenes (inverse dynamics labels,
  closed-loop samples).
- `train.py`: `train_traffic` (behaviour cloning with closed-loop data).
- `wosac.py`: the WOSAC-style realism meta-metric (feature histograms against logs).
- `wosac_interaction.py`: its interaction features (nearest-object distance, TTC of the object followed).
- `realism.py`: run a traffic model on real scenes, score it with `wosac.py`, plot the histograms.
- `futures.py`: N alternative futures of one seed scene from a stochastic model.

It sits above `sim/` (it rolls scenes out); `sim/` never imports it: the model is handed in.
"""
