"""One module per paper (and the quickstart tour); each experiment is a function taking a
preset (``quick`` or ``paper``) and a run directory, registered in ``EXPERIMENTS``."""
from radiorl.experiments.registry import EXPERIMENTS, get_experiment

__all__ = ["EXPERIMENTS", "get_experiment"]
