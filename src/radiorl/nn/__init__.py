"""Network blocks shared by the agents (ensembles of MLPs and recurrent cells)."""
from radiorl.nn.ensemble import (EnsembleLinear, EnsembleMLP, EnsembleRNNCell,
                                 clip_grad_norm_per_member)

__all__ = ["EnsembleLinear", "EnsembleMLP", "EnsembleRNNCell", "clip_grad_norm_per_member"]
