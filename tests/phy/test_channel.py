"""phy/ against closed-form tables (oracles C.7–C.10)."""
import numpy as np
import pytest

from radiorl.phy import (bessel_j0, dbm_to_watt, fspl_db, gauss_markov_step, jakes_rho,
                         lte_macro_pathloss_db, rayleigh_init, shannon_rate, sinr_downlink,
                         spectral_efficiency, watt_to_dbm)


@pytest.mark.parametrize("d_m,pl,snr", [(35, 73.36, 63.6), (100, 90.50, 46.5), (250, 105.46, 31.5),
                                        (500, 116.78, 20.2), (1000, 128.10, 8.9)])
def test_lte_pathloss_table(d_m, pl, snr):
    assert lte_macro_pathloss_db(d_m) == pytest.approx(pl, abs=0.01)
    assert 23 - lte_macro_pathloss_db(d_m) + 114 == pytest.approx(snr, abs=0.06)


def test_pathloss_decade_adds_37_6_db():
    assert lte_macro_pathloss_db(1230.0) - lte_macro_pathloss_db(123.0) == pytest.approx(37.6)


@pytest.mark.parametrize("d_km,f_mhz,val", [(1, 300, 81.99), (2, 400, 90.51), (3.6, 1500, 107.10),
                                            (10, 2400, 120.05), (14.14, 5800, 130.73)])
def test_fspl_table(d_km, f_mhz, val):
    assert fspl_db(d_km * 1e3, f_mhz * 1e6) == pytest.approx(val, abs=0.015)


def test_shannon_values():
    assert shannon_rate(2e6, 1.0) == pytest.approx(2e6)
    assert shannon_rate(10e6, 100.0) == pytest.approx(66.58e6, rel=1e-4)
    assert spectral_efficiency(1e6, cap_db=30.0) == pytest.approx(np.log2(1001.0))
    assert spectral_efficiency(10.0, cap_db=30.0) == pytest.approx(np.log2(11.0))


def test_units_and_j0():
    assert dbm_to_watt(23.0) == pytest.approx(0.19953, rel=1e-4)
    assert watt_to_dbm(dbm_to_watt(-114.0)) == pytest.approx(-114.0)
    assert jakes_rho(10.0, 0.02) == pytest.approx(0.6425, abs=1e-4)
    # J0 known values: J0(0)=1, first zero at 2.404825557695773
    assert bessel_j0(0.0) == pytest.approx(1.0)
    assert bessel_j0(2.404825557695773) == pytest.approx(0.0, abs=1e-10)
    assert bessel_j0(1.0) == pytest.approx(0.7651976865579666, abs=1e-12)


def test_gauss_markov_keeps_power_and_lag1_correlation():
    rng = np.random.default_rng(0)
    rho, n, T = 0.6425, 20000, 40
    b = rayleigh_init(rng, n)
    series = [b]
    for _ in range(T):
        b = gauss_markov_step(b, rayleigh_init(rng, n), rho)
        series.append(b)
    s = np.array(series)
    power = np.mean(np.abs(s) ** 2)
    assert power == pytest.approx(1.0, abs=4 * np.sqrt(1.0 / s.size) * 3)
    lag1 = np.mean(s[1:] * np.conj(s[:-1])).real
    assert lag1 == pytest.approx(rho, abs=0.01)


def test_sinr_hand_computed():
    # 2 APs, 2 devices; device n served by AP n.
    g = np.array([[1e-10, 2e-12], [4e-12, 5e-10]])       # [K, N]
    p = np.array([0.2, 0.1])
    s = sinr_downlink(g, p, np.array([0, 1]), 1e-13)
    assert s[0] == pytest.approx(1e-10 * 0.2 / (4e-12 * 0.1 + 1e-13))
    assert s[1] == pytest.approx(5e-10 * 0.1 / (2e-12 * 0.2 + 1e-13))
