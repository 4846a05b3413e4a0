"""MA-CDMP: the mean-field conditional diffusion planner (Zhang et al.)."""
from radiorl.agents.macdmp.model import (MACDMPConfig, MACDMPModel, build_model, load_model,
                                         save_model)
from radiorl.agents.macdmp.planner import MACDMPPolicy, Planner, PlannerSettings
from radiorl.agents.macdmp.train import train

__all__ = ["MACDMPConfig", "MACDMPModel", "MACDMPPolicy", "Planner", "PlannerSettings",
           "build_model", "load_model", "save_model", "train"]
