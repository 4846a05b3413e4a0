"""Rollouts, paired evaluation, QoS metrics, tables and plots."""
from radiorl.evaluation.metrics import EpisodeMetrics, StabilityRule
from radiorl.evaluation.runner import evaluate, rollout

__all__ = ["EpisodeMetrics", "StabilityRule", "evaluate", "rollout"]
