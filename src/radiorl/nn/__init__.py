"""Network blocks shared by the agents: ensembles of MLPs and recurrent cells (``ensemble``),
plain and denoising MLPs (``mlp``), and the temporal U-Net / value network of the diffusion
planners (``temporal``), and the U-Net with attention across agents of MADiff
(``agent_attention``)."""
from torch import nn

from radiorl.nn.agent_attention import AgentAttention, MultiAgentTemporalUNet
from radiorl.nn.ensemble import (EnsembleLinear, EnsembleMLP, EnsembleRNNCell,
                                 clip_grad_norm_per_member)
from radiorl.nn.mlp import MLP, MLPDenoiser
from radiorl.nn.temporal import (Conv1dBlock, ResidualTemporalBlock, SinusoidalEmbedding,
                                 StepConditionEmbedding, TemporalUNet, TemporalValueNet,
                                 TimeEmbedding, group_count)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (only those with ``requires_grad`` if
    ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = ["EnsembleLinear", "EnsembleMLP", "EnsembleRNNCell", "clip_grad_norm_per_member",
           "MLP", "MLPDenoiser",
           "SinusoidalEmbedding", "TimeEmbedding", "StepConditionEmbedding", "Conv1dBlock",
           "ResidualTemporalBlock", "TemporalUNet", "TemporalValueNet", "group_count",
           "AgentAttention", "MultiAgentTemporalUNet", "count_parameters"]
