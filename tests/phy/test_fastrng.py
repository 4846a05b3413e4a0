"""Tests for radiorl.phy.fastrng: xoshiro256++ lanes + 256-layer ziggurat normals."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from radiorl.phy import fastrng as fr
from radiorl.phy.fastrng import GaussianStream

N_STAT = 2_000_000
SQRT2 = math.sqrt(2.0)


def _phi_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / SQRT2))


_erf_vec = np.frompyfunc(math.erf, 1, 1)


def _cdf_array(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf_vec(np.asarray(x, dtype=np.float64) / SQRT2).astype(np.float64))


# ------------------------------------------------------------------------------------------
# The uniform generator
# ------------------------------------------------------------------------------------------

def test_xoshiro256pp_known_answer():
    # Reference outputs of xoshiro256++ for the seed state (1, 2, 3, 4).
    expected = [41943041, 58720359, 3588806011781223, 3591011842654386,
                9228616714210784205, 9973669472204895162, 14011001112246962877,
                12406186145184390807, 15849039046786891736, 10450023813501588000]
    s = np.array([1, 2, 3, 4], dtype=np.uint64)
    assert fr._xoshiro_sequence(s, 10).tolist() == expected


def _bits(s4: np.ndarray) -> np.ndarray:
    return np.unpackbits(s4.astype("<u8").view(np.uint8), bitorder="little").astype(np.float64)


def _from_bits(b: np.ndarray) -> np.ndarray:
    return np.packbits(b.astype(np.uint8), bitorder="little").view("<u8").astype(np.uint64)


def test_jump_equals_2_pow_128_steps():
    # xoshiro256++'s state update is GF(2)-linear: build its 256x256 matrix T from unit states,
    # square it 128 times and compare T^(2^128) s with the jump polynomial's result.
    cols = []
    for j in range(256):
        e = np.zeros(256)
        e[j] = 1.0
        s4 = _from_bits(e)
        fr._xoshiro_sequence(s4, 1)
        cols.append(_bits(s4))
    t = np.array(cols).T
    for _ in range(128):
        t = np.mod(t @ t, 2.0)
    rng = np.random.default_rng(7)
    for _ in range(3):
        s4 = rng.integers(0, 2 ** 64, size=4, dtype=np.uint64)
        want = _from_bits(np.mod(t @ _bits(s4), 2.0))
        assert np.array_equal(fr._jump(s4), want)


def test_state_layout_lanes_are_successive_jumps():
    st = fr.new_state(np.random.default_rng(3))
    assert st.dtype == np.uint64 and st.shape == (fr.STATE_WORDS,)
    lanes = st[:4 * fr.LANES].reshape(4, fr.LANES)
    for lane in range(fr.LANES - 1):
        assert np.array_equal(fr._jump(lanes[:, lane].copy()), lanes[:, lane + 1])
    assert np.array_equal(fr._jump(lanes[:, -1].copy()), st[4 * fr.LANES:])


def test_ziggurat_tables_consistent():
    assert fr.ZIGGURAT_R == pytest.approx(3.6541528853610088, rel=1e-14)
    x = fr._X
    assert np.all(np.diff(x) < 0) and x[-1] == 0.0
    f = np.exp(-0.5 * x * x)
    areas = x[1:-1] * (f[2:] - f[1:-1])            # layers 1..255 are rectangles of area v
    assert np.allclose(areas, fr._V, rtol=1e-9)
    tail = math.sqrt(math.pi / 2) * math.erfc(fr.ZIGGURAT_R / SQRT2)
    assert fr._V == pytest.approx(fr.ZIGGURAT_R * f[1] + tail, rel=1e-14)
    assert x[0] * f[1] == pytest.approx(fr._V, rel=1e-14)
    # the top layer [0, X[255]] x [f(X[255]), 1] closes the recursion with area v as well
    assert x[255] * (1.0 - f[255]) == pytest.approx(fr._V, rel=1e-9)
    # fast-path thresholds are the inner-rectangle fractions
    assert fr._K64[0] == math.floor(2.0 ** 52 * x[1] / x[0]) and fr._K64[255] == 0
    assert fr._K32[10] == math.floor(2.0 ** 23 * x[11] / x[10])


# ------------------------------------------------------------------------------------------
# Determinism and state handling
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_seed_same_stream_different_seed_different(dtype):
    a = GaussianStream.from_generator(np.random.default_rng(42)).standard_normal(10_001, dtype)
    b = GaussianStream.from_generator(np.random.default_rng(42)).standard_normal(10_001, dtype)
    c = GaussianStream.from_generator(np.random.default_rng(43)).standard_normal(10_001, dtype)
    assert a.dtype == dtype and a.shape == (10_001,)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.mean(a == c) < 1e-3
    assert np.array_equal(GaussianStream.from_seed(42).standard_normal(10_001, dtype), a)


def test_from_generator_consumes_rng_deterministically():
    rng = np.random.default_rng(5)
    s1 = GaussianStream.from_generator(rng)
    s2 = GaussianStream.from_generator(rng)          # next words of rng -> different stream
    assert not np.array_equal(s1.state, s2.state)
    rng = np.random.default_rng(5)
    assert np.array_equal(GaussianStream.from_generator(rng).state, s1.state)
    assert np.array_equal(GaussianStream.from_generator(rng).state, s2.state)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_get_set_state_round_trip(dtype):
    s = GaussianStream.from_seed(1)
    s.standard_normal(777, dtype)
    saved = s.get_state()
    assert saved.dtype == np.uint64 and saved.shape == (fr.STATE_WORDS,)
    cont = s.standard_normal((50, 41), dtype)
    assert not np.array_equal(s.state, saved)
    s.set_state(saved)
    assert np.array_equal(s.standard_normal((50, 41), dtype), cont)
    saved[:] = 1                                      # get_state returned a copy
    assert not np.array_equal(s.state, saved)
    other = GaussianStream.from_seed(99)
    other.set_state(s.get_state())
    assert np.array_equal(other.standard_normal(100, dtype), s.standard_normal(100, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_branches_identically(dtype):
    s = GaussianStream.from_seed(2)
    s.standard_normal(33, dtype)
    t = s.copy()
    u = GaussianStream(s.state.copy())               # plain-array copy, as a dataclass holds it
    v = pickle.loads(pickle.dumps(s))
    a = s.standard_normal(5000, dtype)
    assert np.array_equal(t.standard_normal(5000, dtype), a)
    assert np.array_equal(u.standard_normal(5000, dtype), a)
    assert np.array_equal(v.standard_normal(5000, dtype), a)
    # the branches are independent objects: advancing one does not move the others
    assert not np.array_equal(s.standard_normal(10, dtype), a[:10])


def test_functional_api_matches_class():
    st = fr.new_state(np.random.default_rng(11))
    a = fr.standard_normal(st.copy(), (3, 4), np.float64)
    out = np.empty((3, 4))
    assert fr.fill_standard_normal(st, out) is out
    assert np.array_equal(a, out)
    s = GaussianStream.from_generator(np.random.default_rng(11))
    assert np.array_equal(s.standard_normal((3, 4), np.float64), a)


@pytest.mark.parametrize("dtype,unit", [(np.float32, 2 * fr.LANES), (np.float64, fr.LANES)])
def test_split_calls_match_one_call_at_step_multiples(dtype, unit):
    whole = GaussianStream.from_seed(4).standard_normal(10 * unit + 3, dtype)
    s = GaussianStream.from_seed(4)
    parts = [s.standard_normal(unit, dtype), s.standard_normal(6 * unit, dtype),
             s.standard_normal(3 * unit + 3, dtype)]
    assert np.array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multidimensional_fill_is_c_order(dtype):
    shape = (4, 3, 19, 57)
    s = GaussianStream.from_seed(8)
    t = s.copy()
    arr = np.empty(shape, dtype)
    s.fill_standard_normal(arr)
    flat = t.standard_normal(int(np.prod(shape)), dtype)
    assert np.array_equal(arr.reshape(-1), flat)
    # a C-contiguous view into a larger array is fine too
    big = np.zeros((10, 57), dtype)
    s.fill_standard_normal(big[2:5])
    assert np.all(big[:2] == 0) and np.all(big[5:] == 0) and np.all(big[2:5] != 0)


def test_empty_and_scalar_shapes():
    s = GaussianStream.from_seed(0)
    before = s.get_state()
    e = s.standard_normal((0, 5))
    assert e.shape == (0, 5)
    assert np.array_equal(s.state, before)            # nothing drawn, nothing consumed
    z = s.standard_normal()
    assert z.shape == () and z.dtype == np.float32 and np.isfinite(z)


# ------------------------------------------------------------------------------------------
# Argument checking
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    np.empty(10, np.float64)[::2],
    np.empty((6, 4), np.float32).T,
    np.asfortranarray(np.empty((6, 4))),
])
def test_non_contiguous_out_rejected(bad):
    s = GaussianStream.from_seed(0)
    with pytest.raises(ValueError, match=r"out must be C-contiguous"):
        s.fill_standard_normal(bad)


@pytest.mark.parametrize("bad", [
    np.empty(10, np.int64), np.empty(10, np.float16), np.empty(10, np.complex64),
    np.empty(10, ">f8"),
])
def test_non_float_out_rejected(bad):
    s = GaussianStream.from_seed(0)
    with pytest.raises(ValueError, match=r"out must have dtype float32 or float64"):
        s.fill_standard_normal(bad)


def test_other_bad_arguments():
    s = GaussianStream.from_seed(0)
    with pytest.raises(ValueError, match=r"out must be a numpy.ndarray"):
        s.fill_standard_normal([0.0, 1.0])
    ro = np.empty(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"out must be writeable"):
        s.fill_standard_normal(ro)
    with pytest.raises(ValueError, match=r"dtype must be float32 or float64"):
        s.standard_normal(3, dtype=np.int32)
    with pytest.raises(ValueError, match=r"state must have dtype uint64"):
        s.set_state(np.zeros(fr.STATE_WORDS, np.int64))
    with pytest.raises(ValueError, match=r"shape \(68,\)"):
        s.set_state(np.ones(10, np.uint64))
    zero_lane = s.get_state()
    zero_lane[[3, fr.LANES + 3, 2 * fr.LANES + 3, 3 * fr.LANES + 3]] = 0
    with pytest.raises(ValueError, match=r"all zero"):
        s.set_state(zero_lane)
    with pytest.raises(ValueError, match=r"rng must be a numpy.random.Generator"):
        GaussianStream.from_generator(123)


# ------------------------------------------------------------------------------------------
# Distribution
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=[np.float32, np.float64], ids=["f32", "f64"])
def sample(request):
    z = GaussianStream.from_seed(20240611).standard_normal(N_STAT, request.param)
    return z.astype(np.float64)


def test_moments(sample):
    n = sample.size
    m = sample.mean()
    assert abs(m) < 5.0 / math.sqrt(n)
    c = sample - m
    var = np.mean(c * c)
    assert abs(var - 1.0) < 5.0 * math.sqrt(2.0 / n)
    skew = np.mean(c ** 3) / var ** 1.5
    assert abs(skew) < 5.0 * math.sqrt(6.0 / n)
    kurt = np.mean(c ** 4) / var ** 2
    assert abs(kurt - 3.0) < 5.0 * math.sqrt(24.0 / n)


def test_kolmogorov_smirnov(sample):
    n = sample.size
    x = np.sort(sample)
    cdf = _cdf_array(x)
    i = np.arange(1, n + 1)
    d = max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n))
    assert d < 1.95 / math.sqrt(n)                  # 0.1 % critical value


def test_binned_chi_square(sample):
    # 80 bins of width 0.1 on [-4, 4] plus the two tails: catches local (wedge) defects that the
    # KS statistic is too coarse to see.
    edges = np.concatenate([[-np.inf], np.linspace(-4.0, 4.0, 81), [np.inf]])
    counts = np.histogram(sample, bins=edges)[0]
    cdf = np.array([0.0] + [_phi_cdf(e) for e in edges[1:-1]] + [1.0])
    expected = sample.size * np.diff(cdf)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    df = len(counts) - 1
    assert chi2 < df + 5.0 * math.sqrt(2.0 * df)


@pytest.mark.parametrize("a", [3.0, 4.0, fr.ZIGGURAT_R])
def test_tail_frequencies(sample, a):
    n = sample.size
    p = math.erfc(a / SQRT2)                         # P(|Z| > a)
    k = int(np.count_nonzero(np.abs(sample) > a))
    assert abs(k - n * p) < 5.0 * math.sqrt(n * p * (1.0 - p))
    # both signs populated symmetrically
    kp = int(np.count_nonzero(sample > a))
    assert abs(kp - k / 2) < 5.0 * math.sqrt(k / 4) + 1


@pytest.mark.parametrize("lag", [1, 2, fr.LANES, 2 * fr.LANES])
def test_autocorrelation(sample, lag):
    c = sample - sample.mean()
    rho = np.dot(c[:-lag], c[lag:]) / np.dot(c, c)
    assert abs(rho) < 5.0 / math.sqrt(sample.size)


def test_tail_sampler_matches_conditional_normal():
    # Values beyond R come only from Marsaglia's tail sampler: check it against the exact
    # conditional law P(|Z| <= x | |Z| > R) = 1 - Q(x) / Q(R).
    st = fr.new_state(np.random.default_rng(17))
    n = 20_000
    x = np.sort(np.array([fr._tail(st) for _ in range(n)]))
    assert x[0] > fr.ZIGGURAT_R
    q = lambda v: math.erfc(v / SQRT2)               # noqa: E731
    qr = q(fr.ZIGGURAT_R)
    cdf = 1.0 - np.array([q(v) for v in x]) / qr
    i = np.arange(1, n + 1)
    d = max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n))
    assert d < 1.95 / math.sqrt(n)


def test_kernels_callable_from_numba_code():
    from numba import njit

    @njit
    def draw_two(state, re, im):
        fr.normal_fill_f32(state, re.reshape(-1))
        fr.normal_fill_f32(state, im.reshape(-1))

    s = GaussianStream.from_seed(21)
    t = s.copy()
    re = np.empty((2, 3, 19, 57), np.float32)
    im = np.empty_like(re)
    draw_two(s.state, re, im)
    assert np.array_equal(re, t.standard_normal(re.shape))
    assert np.array_equal(im, t.standard_normal(im.shape))
