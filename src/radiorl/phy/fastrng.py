"""Fast, exact, reproducible standard-normal generator (numba, single thread).

Why
---
The cellular simulator draws ~4·10^5 Rayleigh-fading innovations per slot. numpy's
``Generator.standard_normal`` costs ~8-10 ns per sample on our machines; this module produces
the same distribution at ~1.5-1.8 ns per sample on one core, ~5.5x faster
(``benchmarks/bench_fastrng.py``).

Method
------
* **Uniform bits: xoshiro256++** (Blackman & Vigna, 2019), 256-bit state, period 2^256 - 1,
  passes BigCrush/PractRand; all 64 output bits are of full quality (unlike xoshiro256+, whose
  low bits are weak), so the low bits can safely select the ziggurat layer. To let LLVM
  vectorise the generator, ``LANES = 16`` independent xoshiro256++ streams advance side by side;
  step ``k`` produces the raw words ``k*LANES + 0 .. k*LANES + LANES-1`` (lane order). Lane ``l``
  starts at the seed state advanced by ``l`` applications of the official jump polynomial
  (2^128 steps each), so lanes are provably non-overlapping for 2^128 draws each. A 17th scalar
  stream (one more jump) feeds the rare rejection/tail branch, so the number of raw words a call
  consumes from the lanes depends only on its size.
* **Gaussian transform: Marsaglia–Tsang ziggurat with 256 layers** (tables computed at import
  from the exact layer recursion, the base-strip edge ``R ≈ 3.6541528853610088`` solved by
  bisection). One raw word gives one float64 sample (8 bits layer, 1 bit sign, 52 bits position)
  or two float32 samples (each 32-bit half: 8 bits layer, 1 bit sign, 23 bits position — the
  same resolution as numpy's float32 ziggurat). 98.5 % of samples take the fast path (one
  integer compare and one multiply); the rest do the exact wedge test ``exp(-x²/2)`` or
  Marsaglia's exact exponential-rejection tail sampler for ``|x| > R``, with fresh uniforms from
  the rejection stream.

Exactness
---------
The ziggurat is a rejection method, not an approximation: conditional on ideal uniform inputs,
the output density is exactly ``φ(x)`` apart from (a) the quantisation of the position within a
layer (2^-52 of the layer width for float64, 2^-23 for float32) and (b) the rounding of the
tables and of the output to the target precision (relative ~1e-16 / ~6e-8). There is no
truncation of the tail (values beyond ``R`` come from the exact tail sampler; the largest
attainable value is unbounded in principle). ``tests/phy/test_fastrng.py`` checks, on 2M
samples per dtype, moments, the Kolmogorov–Smirnov distance, a binned chi-square, tail
frequencies and autocorrelations (lags 1, 2, 16, 32); the tail sampler separately against the
exact conditional law; the generator against the reference xoshiro256++ vector; and the jump
against the 2^128-th power of the GF(2) transition matrix.

Determinism and state
---------------------
The whole generator state is a plain C-contiguous ``numpy.uint64`` array of shape
``(STATE_WORDS,) == (68,)``: words ``[w*LANES + l]`` hold word ``w`` of lane ``l``
(``w = 0..3``), words ``[64:68]`` the rejection stream. Copying the array branches the stream
(both copies continue identically); it pickles, fits in a dataclass and round-trips through
``get_state``/``set_state``. The output is a deterministic function of the state and of the
sequence of (size, dtype) requests: a call for ``n`` samples advances the lanes by
``ceil(n / LANES)`` steps (float64) or ``ceil(n / (2*LANES))`` steps (float32) and discards the
unused words of the last step, so ``fill(a); fill(b)`` equals ``fill(a + b)`` whenever ``a`` is
a multiple of 16 (float64) or 32 (float32). Seeding draws four 64-bit words from a
``numpy.random.Generator`` (``rng.integers(0, 2**64, dtype=uint64)``), so the same numpy seed
always gives the same stream. Bit layout assumes a little-endian host only for float32 (low
half first), which we state rather than check.

Performance notes
-----------------
Per block of 2048 raw words the lanes are advanced in one vectorised loop (AVX2/AVX-512 rotates,
~0.35 ns per 64-bit word), then a scalar loop applies the ziggurat fast path with a
well-predicted branch to the rejection code (~1.1 ns per sample; gather-based and branch-free
variants measured no faster here). ``fastmath`` is deliberately not used: the hot loop is
integer-bound (no measurable gain) and the wedge/tail code must keep exact ``exp``/``log``.
Single thread only; no ``parallel=True``.

API
---
``GaussianStream.from_generator(rng)`` / ``GaussianStream.from_seed(seed)``; methods
``fill_standard_normal(out)``, ``standard_normal(shape, dtype=np.float32)``, ``copy()``,
``get_state()``, ``set_state(state)``; attribute ``state`` (the live uint64 array).
Functional form: ``new_state(rng)``, ``fill_standard_normal(state, out)``,
``standard_normal(state, shape, dtype)``. From other numba code call the jitted kernels
``normal_fill_f32(state, out1d)`` / ``normal_fill_f64(state, out1d)`` directly (no validation;
``out1d`` 1-D contiguous, e.g. ``arr.reshape(-1)``).

Example::

    >>> s = GaussianStream.from_seed(0)
    >>> z = s.standard_normal((64, 3, 19, 57))          # float32, ~1.5 ns/sample
    >>> t = s.copy(); a = s.standard_normal(5); b = t.standard_normal(5); bool((a == b).all())
    True
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "LANES", "STATE_WORDS", "N_LAYERS", "ZIGGURAT_R",
    "GaussianStream", "new_state", "fill_standard_normal", "standard_normal",
    "normal_fill_f32", "normal_fill_f64",
]

LANES = 16                      # parallel xoshiro256++ lanes (vectorised by LLVM)
STATE_WORDS = 4 * LANES + 4     # 4 words per lane + the scalar rejection stream
_FIX = 4 * LANES                # offset of the rejection stream in the state array
_BLOCK = 2048                   # raw 64-bit words generated per block (16 KiB, stays in L1)
N_LAYERS = 256

# ---------------------------------------------------------------------------------------------
# Ziggurat tables (Marsaglia & Tsang 2000), computed once at import.
# Layer edges X[0] > X[1] = R > X[2] > ... > X[255] > X[256] = 0 with f(x) = exp(-x²/2):
#   layer 0   : base strip of width X[0] = v / f(R) (rectangle [0, R] x [0, f(R)] plus tail),
#   layer i>=1: rectangle [0, X[i]] x [f(X[i]), f(X[i+1])], all of equal area v.
# A position x = U * X[i] is accepted at once if x < X[i+1] (inner rectangle); otherwise layer 0
# goes to the tail sampler and layers >= 1 to the wedge test.
# ---------------------------------------------------------------------------------------------


def _layer_edges(r: float, n: int) -> tuple[np.ndarray, float, float]:
    """Edges for base-strip edge ``r``; returns (X, v, closure error of the top layer)."""
    f_r = math.exp(-0.5 * r * r)
    v = r * f_r + math.sqrt(math.pi / 2.0) * math.erfc(r / math.sqrt(2.0))
    x = np.zeros(n + 1)
    x[0] = v / f_r
    x[1] = r
    for i in range(1, n - 1):
        y = math.exp(-0.5 * x[i] * x[i]) + v / x[i]
        if y >= 1.0:            # r too small: layers reach the peak before layer n-1
            return x, v, 1.0 + (n - 1 - i)
        x[i + 1] = math.sqrt(-2.0 * math.log(y))
    top = x[n - 1]
    return x, v, math.exp(-0.5 * top * top) + v / top - 1.0


def _solve_r(n: int) -> float:
    lo, hi = 2.0, 6.0           # closure error > 0 at lo, < 0 at hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _layer_edges(mid, n)[2] > 0.0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 4e-16 * hi:
            break
    return hi


ZIGGURAT_R = _solve_r(N_LAYERS)
_X, _V, _ = _layer_edges(ZIGGURAT_R, N_LAYERS)
_INV_R = 1.0 / ZIGGURAT_R
_F = np.exp(-0.5 * _X * _X)                         # f at the edges, _F[256] = 1
_F_LO = _F[:N_LAYERS].copy()                        # f(X[i])   (bottom of layer i)
_F_HI = _F[1:N_LAYERS + 1].copy()                   # f(X[i+1]) (top of layer i)
_F_LO[0] = 0.0                                      # unused for layer 0 (tail instead)
_RATIO = _X[1:N_LAYERS + 1] / _X[:N_LAYERS]         # inner-rectangle fraction per layer
# float64: 52-bit position
_K64 = np.floor(_RATIO * 2.0 ** 52).astype(np.uint64)
_W64 = _X[:N_LAYERS] / 2.0 ** 52
_WS64 = np.concatenate([_W64, -_W64])               # indexed by 9 bits: layer | sign << 8
# float32: 23-bit position
_K32 = np.floor(_RATIO * 2.0 ** 23).astype(np.uint32)
_W32 = (_X[:N_LAYERS] / 2.0 ** 23).astype(np.float32)
_WS32 = np.concatenate([_W32, -_W32])

# ---------------------------------------------------------------------------------------------
# xoshiro256++
# ---------------------------------------------------------------------------------------------
_U1 = np.uint64(1)
_U8 = np.uint64(8)
_U9 = np.uint64(9)
_U11 = np.uint64(11)
_U12 = np.uint64(12)
_U17 = np.uint64(17)
_U19 = np.uint64(19)
_U23 = np.uint64(23)
_U32 = np.uint64(32)
_U41 = np.uint64(41)
_U45 = np.uint64(45)
_M8 = np.uint64(0xFF)
_M9 = np.uint64(0x1FF)
_V9 = np.uint32(9)
_VM8 = np.uint32(0xFF)
_VM9 = np.uint32(0x1FF)
_TWO_M53 = 2.0 ** -53
# Jump polynomial for 2^128 steps (Blackman & Vigna, reference constants).
_JUMP = np.array([0x180EC6D33CFD0ABA, 0xD5A61266F0C9392C,
                  0xA9582618E03FC9AA, 0x39ABDC4529B1661C], dtype=np.uint64)


@njit(cache=True, inline="always")
def _xoshiro_step(s0, s1, s2, s3):
    """One xoshiro256++ step: returns ``(output, s0', s1', s2', s3')``."""
    q = s0 + s3
    res = ((q << _U23) | (q >> _U41)) + s0
    t = s1 << _U17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << _U45) | (s3 >> _U19)
    return res, s0, s1, s2, s3


@njit(cache=True)
def _next_fix(state):
    """One xoshiro256++ output from the scalar rejection stream ``state[_FIX:_FIX+4]``."""
    res, state[_FIX], state[_FIX + 1], state[_FIX + 2], state[_FIX + 3] = _xoshiro_step(
        state[_FIX], state[_FIX + 1], state[_FIX + 2], state[_FIX + 3])
    return res


@njit(cache=True)
def _xoshiro_sequence(s4, n):
    """``n`` outputs of a single xoshiro256++ stream with state ``s4`` (4 words, advanced in place).

    Reference implementation used by the tests (known-answer vector) and by ``_jump``.
    """
    out = np.empty(n, np.uint64)
    for k in range(n):
        out[k], s4[0], s4[1], s4[2], s4[3] = _xoshiro_step(s4[0], s4[1], s4[2], s4[3])
    return out


@njit(cache=True)
def _jump(s4):
    """Return the state 2^128 steps after ``s4`` (GF(2) jump polynomial); ``s4`` is not changed."""
    cur = s4.copy()
    acc = np.zeros(4, np.uint64)
    for w in range(4):
        word = _JUMP[w]
        for b in range(64):
            if (word >> np.uint64(b)) & _U1:
                for j in range(4):
                    acc[j] ^= cur[j]
            _xoshiro_sequence(cur, 1)
    return acc


@njit(cache=True)
def _seed_state(seed4):
    """Full generator state from a 4-word xoshiro seed (not all zero)."""
    state = np.empty(STATE_WORDS, np.uint64)
    cur = seed4.copy()
    for lane in range(LANES):
        for w in range(4):
            state[w * LANES + lane] = cur[w]
        cur = _jump(cur)
    for w in range(4):
        state[_FIX + w] = cur[w]
    return state


@njit(cache=True)
def _advance_lanes(state, buf, steps):
    """Advance the LANES streams by ``steps`` steps writing ``buf[k*LANES + l]`` (vectorised)."""
    for k in range(steps):
        base = k * LANES
        for lane in range(LANES):
            s0 = state[lane]
            s1 = state[LANES + lane]
            s2 = state[2 * LANES + lane]
            s3 = state[3 * LANES + lane]
            q = s0 + s3
            buf[base + lane] = ((q << _U23) | (q >> _U41)) + s0
            t = s1 << _U17
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = (s3 << _U45) | (s3 >> _U19)
            state[lane] = s0
            state[LANES + lane] = s1
            state[2 * LANES + lane] = s2
            state[3 * LANES + lane] = s3


@njit(cache=True)
def _uniform_open0(state):
    """Uniform on (0, 1] with 53-bit resolution from the rejection stream (safe for log)."""
    return (float(_next_fix(state) >> _U11) + 1.0) * _TWO_M53


@njit(cache=True)
def _tail(state):
    """Marsaglia's exact sampler of |Z| conditional on |Z| > R."""
    while True:
        xx = -math.log(_uniform_open0(state)) * _INV_R
        yy = -math.log(_uniform_open0(state))
        if yy + yy > xx * xx:
            return ZIGGURAT_R + xx


@njit(cache=True)
def _slow_f64(state, r):
    """Complete the ziggurat for a raw word ``r`` that missed the fast path (float64 layout)."""
    while True:
        i = r & _M8
        neg = (r >> _U8) & _U1
        rabs = r >> _U12
        x = float(np.int64(rabs)) * _W64[i]
        if rabs < _K64[i]:
            return -x if neg else x
        if i == 0:
            z = _tail(state)
            return -z if neg else z
        u = float(_next_fix(state) >> _U11) * _TWO_M53
        if _F_LO[i] + u * (_F_HI[i] - _F_LO[i]) < math.exp(-0.5 * x * x):
            return -x if neg else x
        r = _next_fix(state)


@njit(cache=True)
def _slow_f32(state, r):
    """As ``_slow_f64`` for a 32-bit word ``r`` (held in a uint64) in the float32 layout."""
    while True:
        i = r & _M8
        neg = (r >> _U8) & _U1
        rabs = r >> _U9
        x = float(np.float32(np.int32(rabs)) * _W32[i])
        if rabs < np.uint64(_K32[i]):
            return -x if neg else x
        if i == 0:
            z = _tail(state)
            return -z if neg else z
        u = float(_next_fix(state) >> _U11) * _TWO_M53
        if _F_LO[i] + u * (_F_HI[i] - _F_LO[i]) < math.exp(-0.5 * x * x):
            return -x if neg else x
        r = _next_fix(state) >> _U32


@njit(cache=True)
def normal_fill_f64(state, out):
    """Fill the 1-D float64 array ``out`` with N(0, 1) samples, advancing ``state`` in place.

    Jitted kernel for use from numba code; no argument checking (``state`` must be a valid
    ``(STATE_WORDS,)`` uint64 state, ``out`` contiguous). Python callers should use
    ``fill_standard_normal``.
    """
    n = out.size
    if n == 0:
        return
    buf = np.empty(_BLOCK, np.uint64)
    start = 0
    while start < n:
        m = min(_BLOCK, n - start)
        _advance_lanes(state, buf, (m + LANES - 1) // LANES)
        for j in range(m):
            r = buf[j]
            i9 = r & _M9
            rabs = r >> _U12
            if rabs < _K64[i9 & _M8]:
                out[start + j] = float(np.int64(rabs)) * _WS64[i9]
            else:
                out[start + j] = _slow_f64(state, r)
        start += m


@njit(cache=True)
def normal_fill_f32(state, out):
    """Fill the 1-D float32 array ``out`` with N(0, 1) samples, advancing ``state`` in place.

    Each raw 64-bit word yields two samples (low 32 bits first). Jitted kernel for use from numba
    code; no argument checking. Python callers should use ``fill_standard_normal``.
    """
    n = out.size
    if n == 0:
        return
    buf = np.empty(_BLOCK, np.uint64)
    start = 0
    while start < n:
        m = min(2 * _BLOCK, n - start)
        nw = (m + 1) // 2
        _advance_lanes(state, buf, (nw + LANES - 1) // LANES)
        half = buf[:nw].view(np.uint32)
        for j in range(m):
            r = half[j]
            i9 = r & _VM9
            rabs = r >> _V9
            if rabs < _K32[i9 & _VM8]:
                out[start + j] = np.float32(np.int32(rabs)) * _WS32[i9]
            else:
                out[start + j] = _slow_f32(state, np.uint64(r))
        start += m


# ---------------------------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------------------------
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@njit(cache=True)
def _substates_nonzero(state):
    """True iff no lane and not the rejection stream has an all-zero (absorbing) state."""
    for lane in range(LANES + 1):
        acc = np.uint64(0)
        for w in range(4):
            acc |= state[_FIX + w] if lane == LANES else state[w * LANES + lane]
        if acc == 0:
            return False
    return True


def _check_state(state, name: str = "state", writeable: bool = True) -> np.ndarray:
    if not isinstance(state, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray of dtype uint64 and shape "
                         f"({STATE_WORDS},), got {type(state).__name__}")
    if state.dtype != np.dtype(np.uint64) or state.shape != (STATE_WORDS,):
        raise ValueError(f"{name} must have dtype uint64 (native byte order) and shape "
                         f"({STATE_WORDS},), got dtype {state.dtype} and shape {state.shape}")
    if not state.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if writeable and not state.flags.writeable:
        raise ValueError(f"{name} must be writeable (it is advanced in place)")
    if not _substates_nonzero(state):
        raise ValueError(f"{name} is invalid: a xoshiro256++ sub-state is all zero")
    return state


def _check_out(out, name: str = "out") -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray with dtype float32 or float64, "
                         f"got {type(out).__name__}")
    if out.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name} must have dtype float32 or float64 (native byte order), "
                         f"got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (any shape), got strides {out.strides} "
                         f"for shape {out.shape}; fill a contiguous array and copy it into place")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return out


def new_state(rng: np.random.Generator) -> np.ndarray:
    """Fresh generator state (uint64 array, shape ``(STATE_WORDS,)``) seeded from ``rng``.

    Draws four 64-bit words from ``rng`` (redrawing in the astronomically unlikely all-zero
    case) and derives the 16 lanes and the rejection stream by 2^128-step jumps.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    while True:
        seed4 = rng.integers(0, 2 ** 64, size=4, dtype=np.uint64)
        if seed4.any():
            return _seed_state(seed4)


def fill_standard_normal(state: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` (float32/float64, any shape, C-contiguous) in place with N(0, 1) samples.

    Samples are written in C order; ``state`` advances in place. Returns ``out``.
    """
    _check_state(state)
    _check_out(out)
    if out.size:
        flat = out.reshape(-1)
        if out.dtype == np.float32:
            normal_fill_f32(state, flat)
        else:
            normal_fill_f64(state, flat)
    return out


def standard_normal(state: np.ndarray, shape=(), dtype=np.float32) -> np.ndarray:
    """New array of N(0, 1) samples of ``shape`` and ``dtype`` (float32 by default)."""
    dt = np.dtype(dtype)
    if dt not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return fill_standard_normal(state, np.empty(shape, dt))


class GaussianStream:
    """A reproducible stream of standard normals; thin wrapper around a uint64 state array.

    Build with ``from_generator(rng)`` or ``from_seed(seed)``; ``GaussianStream(state)`` adopts a
    copy of an existing state. ``state`` is the live array (advanced in place by every draw);
    ``get_state()`` returns a copy, ``set_state(s)`` copies ``s`` into it, ``copy()`` branches
    the stream. Instances pickle (the state is the only attribute).
    """

    __slots__ = ("state",)

    def __init__(self, state: np.ndarray):
        _check_state(state, writeable=False)
        self.state = np.array(state, dtype=np.uint64, order="C", copy=True)

    @classmethod
    def from_generator(cls, rng: np.random.Generator) -> "GaussianStream":
        """Seed from a numpy Generator (consumes four 64-bit words of ``rng``)."""
        return cls(new_state(rng))

    @classmethod
    def from_seed(cls, seed=None) -> "GaussianStream":
        """Shorthand for ``from_generator(np.random.default_rng(seed))``."""
        return cls.from_generator(np.random.default_rng(seed))

    def get_state(self) -> np.ndarray:
        """Copy of the state (uint64, shape ``(STATE_WORDS,)``)."""
        return self.state.copy()

    def set_state(self, state: np.ndarray) -> None:
        """Overwrite the state in place with a copy of ``state``."""
        self.state[...] = _check_state(state, writeable=False)

    def copy(self) -> "GaussianStream":
        """Independent object with the same state: both continue with identical samples."""
        return GaussianStream(self.state)

    def fill_standard_normal(self, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` (float32/float64, any shape, C-contiguous) in place; returns ``out``."""
        return fill_standard_normal(self.state, out)

    def standard_normal(self, shape=(), dtype=np.float32) -> np.ndarray:
        """New array of N(0, 1) samples (float32 by default, like the simulator uses)."""
        return standard_normal(self.state, shape, dtype)

    def __repr__(self) -> str:
        return f"GaussianStream(state[:4]={self.state[:4].tolist()}...)"


# --------------------------------------------------------------------------- scalar streams
# Independent scalar xoshiro256++ streams stored as rows of a ``uint64[R, 4]`` array, for
# per-event simulators (packet arrivals, per-transmission fading draws, random assignments)
# that need a few uniforms at a time inside numba kernels. Row ``r`` is one stream; rows are
# seeded independently from a numpy Generator (``new_streams``).

@njit(cache=True, inline="always")
def stream_next(s, r):
    """Next raw 64-bit output of stream ``s[r]`` (advanced in place)."""
    res, s[r, 0], s[r, 1], s[r, 2], s[r, 3] = _xoshiro_step(s[r, 0], s[r, 1], s[r, 2], s[r, 3])
    return res


@njit(cache=True, inline="always")
def stream_uniform(s, r):
    """Uniform on [0, 1) with 53-bit resolution from stream ``s[r]``."""
    return float(stream_next(s, r) >> _U11) * _TWO_M53


@njit(cache=True, inline="always")
def stream_exponential(s, r):
    """Exp(1) sample (−log of a uniform on (0, 1]) from stream ``s[r]``."""
    return -math.log((float(stream_next(s, r) >> _U11) + 1.0) * _TWO_M53)


@njit(cache=True, inline="always")
def stream_integer(s, r, n):
    """Uniform integer in ``[0, n)`` (``n ≥ 1``; bias below 2^-53·n, negligible)."""
    k = int(stream_uniform(s, r) * n)
    return k if k < n else n - 1


def new_streams(rng: np.random.Generator, n: int) -> np.ndarray:
    """``uint64[n, 4]`` states of ``n`` scalar streams seeded from ``rng`` (no all-zero row)."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    out = rng.integers(0, 2 ** 64, size=(max(int(n), 0), 4), dtype=np.uint64)
    for i in range(len(out)):
        while not out[i].any():
            out[i] = rng.integers(0, 2 ** 64, size=4, dtype=np.uint64)
    return out
