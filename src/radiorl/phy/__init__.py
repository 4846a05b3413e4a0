"""Physical-layer building blocks: pure functions on numpy arrays (no state).

Every function documents its inputs and outputs with shapes and units. Powers in watts unless a
name says ``_dbm`` / ``_db``; distances in metres unless ``_km``.
"""
from radiorl.phy.channel import (
    bessel_j0,
    db_to_linear,
    dbm_to_watt,
    fspl_db,
    fspl_db_scalar,
    gauss_markov_step,
    jakes_rho,
    lte_macro_pathloss_db,
    linear_to_db,
    rayleigh_init,
    watt_to_dbm,
)
from radiorl.phy.link import (shannon_rate, sinr_downlink, spectral_efficiency,
                              thermal_noise_dbm, threshold_success_prob)

__all__ = [
    "bessel_j0", "db_to_linear", "dbm_to_watt", "fspl_db", "gauss_markov_step", "jakes_rho",
    "lte_macro_pathloss_db", "linear_to_db", "rayleigh_init", "watt_to_dbm", "shannon_rate",
    "sinr_downlink", "spectral_efficiency", "fspl_db_scalar", "thermal_noise_dbm",
    "threshold_success_prob",
]
