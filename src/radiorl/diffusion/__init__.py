"""Shared diffusion core: noise schedules, forward noising, samplers, guidance, inpainting.

* :mod:`.schedules` -- :class:`NoiseSchedule` (cosine / linear / VP tables over k = 0..K,
  ``q_sample``).
* :mod:`.samplers` -- :func:`sample` (ancestral DDPM, DDIM, DPM-Solver 1 and ++(2M)),
  :class:`Inpaint`, :func:`timestep_grid`.
* :mod:`.training` -- :func:`noisy_inputs` and :func:`denoising_loss` (the training objective,
  known entries clamped and unweighted).
* :mod:`.guidance` -- :func:`value_guide` (classifier guidance from a value model; compiled:
  :func:`compiled_value_guide`) and
  :func:`classifier_free` (one batched forward for both halves).

Agents (MA-CDMP, MA-Diffuser, MA-DD, MADiff) assemble their planners from these pieces.
"""
from radiorl.diffusion.guidance import classifier_free, compiled_value_guide, value_guide
from radiorl.diffusion.samplers import METHODS, PREDICTIONS, Inpaint, sample, timestep_grid
from radiorl.diffusion.schedules import SCHEDULES, NoiseSchedule
from radiorl.diffusion.training import denoising_loss, noisy_inputs

__all__ = ["SCHEDULES", "NoiseSchedule", "METHODS", "PREDICTIONS", "Inpaint", "sample",
           "timestep_grid", "value_guide", "compiled_value_guide", "classifier_free",
           "noisy_inputs", "denoising_loss"]
