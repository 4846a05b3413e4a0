"""Replay buffer of D2RL transitions (ring buffer of preallocated float32 tensors)."""
from __future__ import annotations

import torch

#: stored columns: name -> trailing shape given (obs_dim, action_dim)
COLUMNS = {
    "obs": lambda s, a: (s,),          # the *observed* state (never a synthetic one)
    "action": lambda s, a: (a,),       # the executed action (after epsilon-greedy)
    "next_obs": lambda s, a: (s,),
    "terminated": lambda s, a: (),     # 1.0 where the episode ended (no bootstrap)
    "target": lambda s, a: (),         # the design's real reward: C ("raw") or C - R'
    "reward": lambda s, a: (),         # what the critic learns from (target or learned reward)
}


class ReplayBuffer:
    """``capacity`` transitions; :meth:`add` writes ``[n, ...]`` rows (overwriting the oldest
    when full), :meth:`sample` draws ``batch`` rows uniformly with replacement from a
    torch.Generator.

    Example:
        >>> buf = ReplayBuffer(4, obs_dim=2, action_dim=1)
        >>> z = torch.zeros(3)
        >>> buf.add(obs=torch.zeros(3, 2), action=torch.zeros(3, 1), next_obs=torch.zeros(3, 2),
        ...         terminated=z, target=z, reward=z)
        >>> len(buf), buf.sample(5, torch.Generator().manual_seed(0))["obs"].shape
        (3, torch.Size([5, 2]))
    """

    def __init__(self, capacity: int, obs_dim: int, action_dim: int):
        self.capacity, self.obs_dim, self.action_dim = int(capacity), int(obs_dim), int(action_dim)
        self.data = {k: torch.zeros((self.capacity, *shape(obs_dim, action_dim)))
                     for k, shape in COLUMNS.items()}
        self.ptr = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, **rows: torch.Tensor) -> None:
        if set(rows) != set(COLUMNS):
            raise ValueError(f"ReplayBuffer.add needs exactly the columns {sorted(COLUMNS)}, "
                             f"got {sorted(rows)}")
        n = int(rows["obs"].shape[0])
        if n > self.capacity:                      # only the newest `capacity` rows survive
            rows = {k: v[-self.capacity:] for k, v in rows.items()}
            n = self.capacity
        idx = (self.ptr + torch.arange(n)) % self.capacity
        for k, v in rows.items():
            self.data[k][idx] = v.detach().to(torch.float32).reshape(n, *self.data[k].shape[1:])
        self.ptr = int((self.ptr + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch: int, generator: torch.Generator) -> dict:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = torch.randint(0, self.size, (int(batch),), generator=generator)
        return {k: v[idx] for k, v in self.data.items()}

    def state_dict(self) -> dict:
        """The filled rows in storage order (plain tensors) plus the write position."""
        return {"ptr": self.ptr, "size": self.size, "capacity": self.capacity,
                "data": {k: v[:self.size].clone() for k, v in self.data.items()}}

    def load_state_dict(self, sd: dict) -> None:
        if sd["capacity"] != self.capacity:
            raise ValueError(f"replay buffer state has capacity {sd['capacity']}, this buffer "
                             f"{self.capacity}")
        n = int(sd["size"])
        for k, v in self.data.items():
            if tuple(sd["data"][k].shape[1:]) != tuple(v.shape[1:]):
                raise ValueError(f"replay buffer column {k!r} has shape "
                                 f"{tuple(sd['data'][k].shape)}, expected [N, "
                                 f"{', '.join(map(str, v.shape[1:]))}]")
            v.zero_()
            v[:n] = sd["data"][k]
        self.ptr, self.size = int(sd["ptr"]), n
