"""Learning agents assembled from :mod:`radiorl.nn` (and :mod:`radiorl.diffusion`)."""
