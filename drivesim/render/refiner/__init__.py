"""The diffusion refiner (DIAMOND-style EDM denoiser) that turns splat renders into camera frames.

Main entry points: `model.Refiner` (+ `RefinerConfig`), `train.train`, `cameras.RefinedCameras`
(splat render -> refined frames, a drop-in for `splat.sensors.SplatCameras`), `eval`.

Files:
  model.py       `Refiner` and `RefinerConfig`: the denoiser wrapper (conditioning, EDM preconditioning)
  net.py         the inner network: a FiLM-conditioned UNet
  sampler.py     the few-step Euler sampler and its sigma schedule
  loss.py        the EDM training loss and its training noise schedule
  warp.py        previous-frame reprojection into the current view (warp_previous)
  data.py        training pairs from synthetic rollouts (splat render, target, previous frame)
  real_pairs.py  training pairs from real logs through a reconstructed scene
  train.py       the training loop, checkpoints and their lineage (splat_version)
  eval.py        held-out evaluation: fidelity and temporal consistency against splat cameras
  cameras.py     `RefinedCameras`: refined surround frames in closed loop, refined videos
"""
