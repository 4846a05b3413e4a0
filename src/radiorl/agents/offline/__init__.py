"""Offline learners: the shared training loop and the baselines of the MA-CDMP comparison
(MA-CQL, MA-TD3+BC, MA-DT, MA-Diffuser, MA-DD, MADiff)."""
