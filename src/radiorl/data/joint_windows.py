"""Joint (team) training windows for multi-agent trajectory diffusion (MADiff).

A **joint window** is the ``H``-frame window of one agent, the *ego*, together with the windows
of its teammates over the same frames ``t … t+H−1`` of the same episode. It is indexed by the
ego's window in a :class:`~radiorl.data.windows.WindowDataset` (so there are exactly as many
joint windows as per-agent windows, and they never cross an episode boundary). The per-agent
pieces (normalized observations, discounted window returns ``y``) are the
:class:`WindowDataset`'s; this module only gathers them across agents.

Teams (``team``):

- ``"neighbors"`` (default): the ego and its 1-hop neighbours in the episode (the dataset's
  ``neighbor_index``). The team size does not depend on the network size, so a model trained
  on these windows runs unchanged on networks of any size.
- ``"network"``: the ego and every other agent of the episode (MADiff's whole-team setting).

Teams are padded to ``max_team`` agents (``agent_mask`` False on padded rows, whose arrays are
zeros); the ego is always row 0, teammates follow in index order. A team larger than
``max_team`` is cut to the ego plus ``max_team − 1`` teammates drawn at random (per batch,
from the sampling ``rng``).

**Team return.** ``team_return[w]`` is the mean of the per-agent window returns ``y`` (MA-CDMP
eq. 14, :func:`~radiorl.data.windows.discounted_window_returns`) over the ego and **all** its
teammates (also those cut by ``max_team``, so it is a property of the window, not of the
draw). ``team_quantile[w]`` is its mid-rank empirical CDF over every joint window of the
dataset, in ``(0, 1)``: a return condition with the same meaning on any dataset ("the q-th
quantile team return"), insensitive to the heavy tail of the delay rewards
(``specs/diffusion-planning.md`` pitfall 6). ``quantile_table`` holds the team return at
quantiles ``0, 0.01, …, 1`` (to translate a target quantile back to a return).

Example::

    windows = WindowDataset(OfflineDataset.open("data.h5"), horizon=16)
    joint = JointWindowDataset(windows, max_team=6)
    train, valid = joint.split(0.05, seed=0)          # by episode
    batch = train.sample(42, np.random.default_rng(0))
    batch["x"].shape                                   # (42, 6, 16, 4)
"""
from __future__ import annotations

import numpy as np

from radiorl.data.windows import WindowDataset
from radiorl.envs.base import check_number

TEAMS = ("neighbors", "network")
#: Quantile levels of :attr:`JointWindowDataset.quantile_table`.
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)


class JointWindowDataset:
    """Joint windows over a **full** :class:`WindowDataset` (see the module docstring).

    Parameters: ``windows`` (every window of its dataset, not a split view), ``max_team``
    (int ≥ 1, rows per joint window), ``team`` (``"neighbors"`` or ``"network"``).

    Attributes: ``windows``, ``max_team``, ``team``, ``teammates`` int64 ``[A, D]`` (global
    ``/agents`` rows of each trajectory's teammates, −1 padded), ``team_size`` int64 ``[A]``
    (1 + teammates, before the ``max_team`` cut), ``team_return`` float64 ``[W]``,
    ``team_quantile`` float32 ``[W]``, ``quantile_table`` float64 ``[101]``, ``ego`` int64
    (the window indices this view samples from; all ``W`` unless split).
    """

    def __init__(self, windows: WindowDataset, max_team: int, team: str = "neighbors"):
        if not isinstance(windows, WindowDataset):
            raise TypeError(f"windows must be a WindowDataset, got {type(windows).__name__}")
        if isinstance(max_team, bool):
            raise ValueError(f"max_team must be an integer >= 1 (agents), got {max_team!r}")
        self.max_team = check_number("max_team", max_team, low=1, high=1024, integer=True)
        if team not in TEAMS:
            raise ValueError(f"team must be one of {list(TEAMS)}, got {team!r}")
        self.team = team
        ds = windows.dataset
        frames = ds.agents["frames"].astype(np.int64)
        counts = np.maximum(frames - windows.horizon + 1, 0)
        if len(windows) != int(counts.sum()):
            raise ValueError("JointWindowDataset needs the full WindowDataset of the dataset "
                             "(every window); split the JointWindowDataset instead")
        self.windows = windows
        self.horizon = windows.horizon
        self._first = np.cumsum(counts) - counts        # window index of (trajectory, t=0)
        self.teammates = _teammates(ds, team)
        self.team_size = 1 + (self.teammates >= 0).sum(axis=1).astype(np.int64)

        # team return of every window: mean of y over the ego and all its teammates
        traj, t, y = windows.window_trajectory, windows.window_t, windows.y
        total = y.astype(np.float64).copy()
        for d in range(self.teammates.shape[1]):
            mate = self.teammates[traj, d]
            ok = np.nonzero(mate >= 0)[0]
            total[ok] += y[self._first[mate[ok]] + t[ok]]
        self.team_return = total / self.team_size[traj]
        srt = np.sort(self.team_return)
        W = len(srt)
        lo = np.searchsorted(srt, self.team_return, side="left")
        hi = np.searchsorted(srt, self.team_return, side="right")
        self.team_quantile = ((lo + hi) / (2.0 * W)).astype(np.float32)
        self.quantile_table = np.quantile(srt, QUANTILE_LEVELS)
        self.ego = np.arange(W, dtype=np.int64)
        self._offsets = np.arange(self.horizon, dtype=np.int64)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.ego.shape[0])

    def __repr__(self) -> str:
        return (f"JointWindowDataset(windows={len(self)}, horizon={self.horizon}, "
                f"team={self.team!r}, max_team={self.max_team})")

    def return_at(self, quantile: float) -> float:
        """Team return (reward units) at ``quantile`` in ``[0, 1]`` of the whole dataset."""
        q = check_number("quantile", quantile, low=0, high=1)
        return float(np.interp(q, QUANTILE_LEVELS, self.quantile_table))

    def batch(self, indices, rng: np.random.Generator | int | None = None
              ) -> dict[str, np.ndarray]:
        """Joint windows ``indices`` (into this view, each in ``[0, len)``), ``N = max_team``:

        ``x`` float32 ``[B, N, H, 4]`` (normalized obs; zeros on padded rows), ``agent_mask``
        bool ``[B, N]``, ``actions`` (requests) and ``grants`` int64 ``[B, N, H]``,
        ``team_return`` float32 ``[B]`` (reward units), ``cond`` float32 ``[B]`` (its quantile),
        ``members`` int64 ``[B, N]`` (``/agents`` rows, −1 on padded rows), ``window`` int64
        ``[B]`` (the ego's window in ``windows``), ``t`` int64 ``[B]``. ``rng`` draws the
        teammates kept when a team exceeds ``max_team``.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"joint window indices must be in [0, {len(self) - 1}], got min "
                             f"{idx.min()} max {idx.max()}")
        w = self.ego[idx]
        win = self.windows
        traj, t = win.window_trajectory[w], win.window_t[w]
        mates = self.teammates[traj]                                       # [B, D]
        keep = self.max_team - 1
        if mates.shape[1] > keep:
            if not isinstance(rng, np.random.Generator):
                rng = np.random.default_rng(rng)
            key = rng.random(mates.shape)
            key[mates < 0] = np.inf
            order = np.sort(np.argsort(key, axis=1, kind="stable")[:, :keep], axis=1)
            mates = np.take_along_axis(mates, order, axis=1)
        elif mates.shape[1] < keep:
            mates = np.pad(mates, ((0, 0), (0, keep - mates.shape[1])), constant_values=-1)
        members = np.concatenate([traj[:, None], mates], axis=1)           # [B, N]
        mask = members >= 0
        ds = win.dataset
        rows = (ds.agents["row_start"][np.where(mask, members, 0)] + t[:, None])[..., None] \
            + self._offsets                                                # [B, N, H]
        x = win._x[rows]                 # the WindowDataset's normalized obs (shared array)
        x[~mask] = 0.0
        actions = ds.actions[rows].astype(np.int64)
        grants = ds.grants[rows].astype(np.int64)
        actions[~mask] = 0
        grants[~mask] = 0
        return {"x": x, "agent_mask": mask, "actions": actions, "grants": grants,
                "team_return": self.team_return[w].astype(np.float32),
                "cond": self.team_quantile[w], "members": np.where(mask, members, -1),
                "window": w, "t": t}

    def sample(self, batch_size: int,
               rng: np.random.Generator | int | None = None) -> dict[str, np.ndarray]:
        """``batch_size`` joint windows drawn uniformly with replacement (see :meth:`batch`)."""
        b = check_number("batch_size", batch_size, low=1, integer=True)
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        return self.batch(rng.integers(0, len(self), size=b), rng)

    # ------------------------------------------------------------------ splitting
    def split(self, valid_fraction: float, seed: int = 0
              ) -> tuple["JointWindowDataset", "JointWindowDataset"]:
        """``(train, valid)`` views by whole **episodes** (a team never straddles the parts),
        as :meth:`WindowDataset.split` with ``by="episode"``; both keep the team returns and
        quantiles of the full dataset."""
        parts = []
        for view in self.windows.split(valid_fraction, seed, by="episode"):
            keep = np.searchsorted(self.windows.starts, view.starts)
            keep = keep[np.isin(keep, self.ego)]
            parts.append(self._view(keep))
        return parts[0], parts[1]

    def _view(self, ego: np.ndarray) -> "JointWindowDataset":
        view = object.__new__(JointWindowDataset)
        view.__dict__.update(self.__dict__)
        view.ego = np.asarray(ego, np.int64)
        return view


def _teammates(ds, team: str) -> np.ndarray:
    """``[A, D]`` global ``/agents`` rows of each trajectory's teammates (−1 padded)."""
    ag = ds.agents
    A = len(ag["frames"])
    if team == "neighbors":
        n = ag["n_neighbors"].astype(np.int64)
        idx = ds.neighbor_index.astype(np.int64)    # concatenated per agent (running offsets)
    else:
        ep = ag["episode"].astype(np.int64)
        n = ds.episodes["n_agents"].astype(np.int64)[ep] - 1
        first = ds.episodes["agent_start"].astype(np.int64)[ep]
        owner = np.repeat(np.arange(A), n)
        pos = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)    # 0 .. n-1 per agent
        mate = first[owner] + pos
        idx = mate + (mate >= owner)                                     # skip the agent itself
    D = int(n.max()) if A else 0
    out = np.full((A, D), -1, np.int64)
    owner = np.repeat(np.arange(A), n)
    col = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    out[owner, col] = idx
    return out
