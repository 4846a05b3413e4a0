"""ULA steering vectors and the clutter channel against closed forms (Dirichlet kernel,
orthogonality at sin θ spacing 2/N, explicit element-wise sums)."""
import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import radiorl.phy.array as arr
from radiorl.phy.array import clutter_channel, ula_steering


def test_doctests():
    res = doctest.testmod(arr)
    assert res.attempted >= 5 and res.failed == 0


def dirichlet_sq(n, s1, s2):
    """|a_N(θ1)ᴴ a_N(θ2)|² = (sin(N x/2) / (N sin(x/2)))², x = π(sin θ2 − sin θ1)."""
    x = np.pi * (s2 - s1)
    if abs(np.sin(x / 2)) < 1e-12:
        return 1.0
    return (np.sin(n * x / 2) / (n * np.sin(x / 2))) ** 2


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 32), theta=st.floats(-np.pi, np.pi))
def test_unit_norm_and_elements(n, theta):
    a = ula_steering(n, theta)
    assert a.shape == (n,)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-12)
    # element m is N^-1/2 e^{jπ m sin θ}
    for m in (0, n - 1):
        assert a[m] == pytest.approx(np.exp(1j * np.pi * m * np.sin(theta)) / np.sqrt(n),
                                     abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 6, 7])
def test_broadside_is_uniform(n):
    np.testing.assert_allclose(ula_steering(n, 0.0), np.full(n, n ** -0.5), atol=1e-15)


@pytest.mark.parametrize("n", [2, 4, 6, 8])
def test_orthogonal_at_sin_spacing_two_over_n(n):
    for s1 in (-1.0, -0.5, -1.0 / n, 0.0):
        for m in range(1, n):
            s2 = s1 + 2.0 * m / n
            if s2 > 1.0:
                continue
            a1 = ula_steering(n, np.arcsin(s1))
            a2 = ula_steering(n, np.arcsin(s2))
            assert abs(np.vdot(a1, a2)) < 1e-12


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 16), t1=st.floats(-1.5, 1.5), t2=st.floats(-1.5, 1.5))
def test_inner_product_is_dirichlet_kernel(n, t1, t2):
    a = ula_steering(n, np.array([t1, t2]))
    assert abs(np.vdot(a[0], a[1])) ** 2 == pytest.approx(
        dirichlet_sq(n, np.sin(t1), np.sin(t2)), abs=1e-10)


def test_batched_shape():
    th = np.linspace(-1, 1, 12).reshape(3, 4)
    a = ula_steering(5, th)
    assert a.shape == (3, 4, 5)
    np.testing.assert_allclose(a[2, 1], ula_steering(5, th[2, 1]))


def test_clutter_channel_elementwise():
    """G[r, t] = Σ_f β_f e^{jπ r sin θ_f} e^{−jπ t sin θ_f} / √(N_r N_t)."""
    th = np.deg2rad([-50.0, 20.0])
    beta = np.array([10.0, 10.0 * np.exp(0.3j)])
    G = clutter_channel(4, 6, th, beta)
    ref = np.zeros((4, 6), complex)
    for f in range(2):
        s = np.sin(th[f])
        for r in range(4):
            for t in range(6):
                ref[r, t] += beta[f] * np.exp(1j * np.pi * (r - t) * s) / np.sqrt(24)
    np.testing.assert_allclose(G, ref, atol=1e-12)
    # a transmit beam along the interferer is reflected as β a_r(θ) (other term: D(θ1, θ2))
    out = G @ ula_steering(6, th[0])
    cross = np.vdot(ula_steering(6, th[1]), ula_steering(6, th[0]))
    np.testing.assert_allclose(out, beta[0] * ula_steering(4, th[0])
                               + beta[1] * cross * ula_steering(4, th[1]), atol=1e-12)


def test_clutter_channel_empty_and_errors():
    np.testing.assert_array_equal(clutter_channel(3, 2, np.zeros(0), np.zeros(0)),
                                  np.zeros((3, 2)))
    with pytest.raises(ValueError, match="theta_rad and beta"):
        clutter_channel(3, 2, np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="n_antennas"):
        ula_steering(0, 0.0)
