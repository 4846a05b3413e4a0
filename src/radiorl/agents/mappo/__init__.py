"""Traffic-driven recurrent MAPPO (Zhang & Guo) with shared and separate policies."""
from radiorl.agents.mappo.policy import MAPPOPolicy
from radiorl.agents.mappo.train import MAPPOConfig, load_checkpoint, train

__all__ = ["MAPPOConfig", "MAPPOPolicy", "load_checkpoint", "train"]
