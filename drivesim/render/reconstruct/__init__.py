"""Reconstruction of a Gaussian scene from a real log (PandaSet), and its artifacts.

Main entry points: `fit.fit(seq, ReconConfig)`, `fit.evaluate`, `artifact.save` / `artifact.load_scene`.

Files:
  fit.py       ReconConfig, object masks, SSIM/PSNR, ground-plane prior, Gaussian init, the fit loop
  artifact.py  saving and loading a fitted scene (content hash), held-out and novel-view figures
"""
