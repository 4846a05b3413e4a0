"""Fixed-length training windows for MA-CDMP, cut strictly inside agent trajectories.

A window is ``H`` consecutive frames ``t … t+H−1`` of one (episode, agent) trajectory. Windows
never cross a trajectory boundary and are never padded (``specs/diffusion-planning.md`` pitfall
5): a trajectory of ``T`` frames contributes ``max(0, T − H + 1)`` windows.

For the window starting at frame ``t`` of a trajectory:

- ``x`` float32 ``[H, 4]``: normalized ``obs[t:t+H]``;
- ``xbar`` float32 ``[H, 4]``: ``mf_obs[t:t+H]`` normalized with the **obs** normalizer (both
  normalizer kinds are affine, so this equals the mean of the neighbours' normalized obs;
  pitfall 4);
- ``actions`` int64 ``[H]`` (requested RBs, raw), ``grants`` int64 ``[H]`` (RBs received);
  ``rewards`` float32 ``[H]`` (raw, −ms);
- ``y`` = ``Σ_{k=0}^{H−1} γ^k r[t+k]`` (MA-CDMP eq. 14: the discounted return of the window,
  not a return-to-go to the episode end);
- ``y_scaled`` = ``y / return_scale``. With ``return_scale="auto"`` the scale is
  ``max |y|`` over all windows of the dataset (1 if every ``y`` is 0), so ``y_scaled ∈ [−1, 1]``
  and the guidance scale does not depend on the dataset's delay units (pitfall 6). A
  :meth:`WindowDataset.split` keeps the scale of the full set for both parts; store
  ``return_scale`` with the model to map conditions back to returns.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from radiorl.data.hdf5 import OfflineDataset
from radiorl.data.normalizers import KINDS, Normalizer
from radiorl.envs.base import check_number


class WindowDataset:
    """All length-``horizon`` windows of an :class:`~radiorl.data.hdf5.OfflineDataset`.

    Parameters: ``horizon`` ``H`` (int ≥ 1, frames); ``gamma`` (discount, ``0 < γ ≤ 1``);
    ``normalizer_kind`` (``"limits"`` or ``"gaussian"``) of the obs normalizer;
    ``return_scale`` (``"auto"`` or a number > 0, in the reward's units).

    Attributes: ``normalizer`` (the obs :class:`Normalizer`, used for ``x`` and ``xbar``),
    ``return_scale`` (float), ``starts`` int64 ``[W]`` (first frame row of each window in the
    dataset's frame arrays), ``window_trajectory`` int64 ``[W]``, ``window_t`` int64 ``[W]``
    (frame index of the window start inside its trajectory), ``y`` float64 ``[W]``,
    ``y_scaled`` float64 ``[W]``.

    ``len(ds)`` is ``W``; ``ds[i]`` is one window as a dict; :meth:`sample` and :meth:`batch`
    gather many windows at once (vectorized) as a dict of stacked arrays.
    """

    def __init__(self, dataset: OfflineDataset, horizon: int, gamma: float = 0.99,
                 normalizer_kind: str = "limits", return_scale: str | float = "auto"):
        if isinstance(horizon, bool):
            raise ValueError(f"horizon must be an integer >= 1 (frames), got {horizon!r}")
        self.horizon = check_number("horizon", horizon, low=1, integer=True)
        self.gamma = check_number("gamma", gamma)
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma (discount) must be in (0, 1], got {gamma!r}")
        if normalizer_kind not in KINDS:
            raise ValueError(f"normalizer_kind must be one of {list(KINDS)}, got {normalizer_kind!r}")
        if not isinstance(dataset, OfflineDataset):
            raise TypeError(f"dataset must be an OfflineDataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.normalizer_kind = normalizer_kind
        self.normalizer: Normalizer = dataset.normalizer("obs", normalizer_kind)
        H = self.horizon

        frames = dataset.agents["frames"].astype(np.int64)
        counts = np.maximum(frames - H + 1, 0)
        W = int(counts.sum())
        if W == 0:
            raise ValueError(f"horizon H = {H} leaves no window: the longest trajectory of "
                             f"{dataset.path} has {int(frames.max())} frames (need H <= T)")
        first = np.cumsum(counts) - counts
        self.window_trajectory = np.repeat(np.arange(len(frames), dtype=np.int64), counts)
        self.window_t = np.arange(W, dtype=np.int64) - np.repeat(first, counts)
        self.starts = dataset.agents["row_start"][self.window_trajectory] + self.window_t
        self.y = discounted_window_returns(dataset.rewards, self.starts, H, self.gamma)

        if isinstance(return_scale, str):
            if return_scale != "auto":
                raise ValueError(f"return_scale must be 'auto' or a number > 0, got {return_scale!r}")
            m = float(np.max(np.abs(self.y)))
            self.return_scale = m if m > 0 else 1.0
        else:
            self.return_scale = check_number("return_scale", return_scale, low=0, low_open=True)
        self.y_scaled = self.y / self.return_scale

        # normalized frame arrays, shared by every view (split) of this dataset
        self._x = np.asarray(self.normalizer.normalize(dataset.obs), np.float32)
        self._xbar = np.asarray(self.normalizer.normalize(dataset.mf_obs), np.float32)
        self._offsets = np.arange(H, dtype=np.int64)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def __repr__(self) -> str:
        return (f"WindowDataset(windows={len(self)}, horizon={self.horizon}, gamma={self.gamma}, "
                f"normalizer={self.normalizer_kind!r}, return_scale={self.return_scale:.6g})")

    @property
    def trajectories(self) -> np.ndarray:
        """Sorted trajectory indices (rows of ``dataset.agents``) that have windows here."""
        return np.unique(self.window_trajectory)

    def __getitem__(self, i) -> dict[str, Any]:
        """Window ``i`` (negative indices count from the end) without a batch axis."""
        n = len(self)
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"window index must be an int, got {type(i).__name__}")
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"window index out of range [0, {n - 1}]")
        out = self.batch(np.array([i]))
        return {k: (v[0].item() if v.ndim == 1 else v[0]) for k, v in out.items()}

    def batch(self, indices) -> dict[str, np.ndarray]:
        """Stack the windows ``indices`` (int array ``[B]``, each in ``[0, W)``):

        ``x``, ``xbar`` float32 ``[B, H, 4]``; ``actions`` (requests) and ``grants`` (RBs
        received) int64 ``[B, H]``; ``rewards`` float32
        ``[B, H]``; ``y``, ``y_scaled`` float32 ``[B]``; ``trajectory``, ``t``, ``row`` int64
        ``[B]`` (trajectory, start frame within it, start row in the frame arrays).
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"window indices must be in [0, {len(self) - 1}], got min "
                             f"{idx.min()} max {idx.max()}")
        starts = self.starts[idx]
        rows = starts[:, None] + self._offsets
        ds = self.dataset
        return {
            "x": self._x[rows],
            "xbar": self._xbar[rows],
            "actions": ds.actions[rows].astype(np.int64),
            "grants": ds.grants[rows].astype(np.int64),
            "rewards": ds.rewards[rows],
            "y": self.y[idx].astype(np.float32),
            "y_scaled": self.y_scaled[idx].astype(np.float32),
            "trajectory": self.window_trajectory[idx],
            "t": self.window_t[idx],
            "row": starts,
        }

    def sample(self, batch_size: int,
               rng: np.random.Generator | int | None = None) -> dict[str, np.ndarray]:
        """``batch_size`` windows drawn uniformly with replacement (see :meth:`batch`)."""
        b = check_number("batch_size", batch_size, low=1, integer=True)
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        return self.batch(rng.integers(0, len(self), size=b))

    # ------------------------------------------------------------------ splitting
    def split(self, valid_fraction: float, seed: int = 0, *, by: str = "trajectory"
              ) -> tuple["WindowDataset", "WindowDataset"]:
        """``(train, valid)`` views by whole trajectories (``by="trajectory"``) or whole episodes
        (``by="episode"``, which also keeps an agent's neighbours out of the other part).

        ``valid_fraction`` in ``(0, 1)``: share of the units (trajectories or episodes with at
        least one window) put in ``valid``, rounded, at least 1 in each part. Both views keep
        this dataset's normalizer and ``return_scale``.
        """
        frac = check_number("valid_fraction", valid_fraction)
        if not 0 < frac < 1:
            raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction!r}")
        if by == "trajectory":
            unit_of_window = self.window_trajectory
        elif by == "episode":
            unit_of_window = self.dataset.agents["episode"][self.window_trajectory]
        else:
            raise ValueError(f"split by must be 'trajectory' or 'episode', got {by!r}")
        units = np.unique(unit_of_window)
        if len(units) < 2:
            raise ValueError(f"cannot split {len(units)} {by}(s) with windows into two "
                             "non-empty parts")
        n_valid = min(max(int(round(frac * len(units))), 1), len(units) - 1)
        rng = np.random.default_rng(check_number("seed", seed, low=0, integer=True))
        valid_units = rng.permutation(units)[:n_valid]
        in_valid = np.isin(unit_of_window, valid_units)
        return self._view(~in_valid), self._view(in_valid)

    def _view(self, mask: np.ndarray) -> "WindowDataset":
        view = object.__new__(WindowDataset)
        view.__dict__.update(self.__dict__)
        for name in ("starts", "window_trajectory", "window_t", "y", "y_scaled"):
            setattr(view, name, getattr(self, name)[mask])
        return view


def discounted_window_returns(rewards: np.ndarray, starts: np.ndarray, horizon: int,
                              gamma: float) -> np.ndarray:
    """``y[w] = Σ_{k=0}^{H−1} γ^k · rewards[starts[w] + k]`` (float64 ``[W]``), vectorized over
    windows (``H`` gathers; ``starts[w] + H − 1`` must be a valid row)."""
    r = np.asarray(rewards, np.float64)
    starts = np.asarray(starts, np.int64)
    y = np.zeros(starts.shape[0], np.float64)
    disc = 1.0
    for k in range(int(horizon)):
        y += disc * r[starts + k]
        disc *= gamma
    return y
