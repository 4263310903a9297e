"""Gaussian-splat cameras: the level-2 sensor model without the refiner.

Main entry points: `sensors.SplatCameras` (render(state, rig) -> frames), `camera.load_rig`,
`rasterize.render` (gsplat on CUDA, the plain torch twin on CPU), `scene.build_background` / `compose`.

Files:
  camera.py     pinhole cameras, `Rig`, rig files (configs/rigs) and their loader
  rigs.py       the shipped rig layouts (surround six, front three ...)
  gaussians.py  the `Gaussians` container (means, quats, scales, opacities, colours)
  projection.py the torch twin's projection (EWA, 2-D conics, radii) and tile binning
  rasterize.py  `render`: backend choice, checks, the torch twin's blending, the gsplat wrapper
  scene.py      procedural scene assets: road background, per-agent box splats, compose
  sensors.py    `SplatCameras` and trajectory helpers: surround frames for a rollout
"""
