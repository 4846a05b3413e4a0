"""Checkpointing a batched environment's state without pickling it.

An environment state is a (possibly nested) dataclass of numpy arrays, scalars and numpy random
generators. :func:`pack_env_state` turns it into plain containers and tensors (loadable with
``torch.load(weights_only=True)``); :func:`unpack_env_state` rebuilds it on a *template* of
the same structure (a fresh ``env.reset`` state), which supplies the dataclass types and the
bit-generator types.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class S:
    ...     x: np.ndarray
    ...     rng: np.random.Generator
    >>> s = S(np.arange(3.0), np.random.default_rng(1))
    >>> t = unpack_env_state(pack_env_state(s), S(np.zeros(3), np.random.default_rng(2)))
    >>> t.x.tolist(), t.rng.random() == s.rng.random()
    ([0.0, 1.0, 2.0], True)
"""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import torch


def pack_env_state(x, path: str = "state"):
    """Plain-container image of ``x`` (dataclasses, dicts, lists/tuples, numpy arrays and
    scalars, tensors, python scalars/strings/None, ``np.random.Generator``)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {"__dataclass__": {f.name: pack_env_state(getattr(x, f.name), f"{path}.{f.name}")
                                  for f in dataclasses.fields(x)}}
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise ValueError(f"cannot checkpoint the environment state: {path} is an object "
                             f"array")
        return {"__ndarray__": torch.from_numpy(np.array(x, copy=True)), "dtype": str(x.dtype)}
    if isinstance(x, np.random.Generator):
        return {"__rng__": json.dumps(x.bit_generator.state)}
    if isinstance(x, torch.Tensor):
        return {"__tensor__": x.detach().clone()}
    if isinstance(x, np.generic):
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, (list, tuple)):
        return {"__seq__": [pack_env_state(v, f"{path}[{i}]") for i, v in enumerate(x)],
                "tuple": isinstance(x, tuple)}
    if isinstance(x, dict):
        if not all(isinstance(k, str) for k in x):
            raise ValueError(f"cannot checkpoint the environment state: {path} has non-string "
                             f"keys")
        return {"__dict__": {k: pack_env_state(v, f"{path}[{k!r}]") for k, v in x.items()}}
    raise ValueError(f"cannot checkpoint the environment state: {path} has type "
                     f"{type(x).__name__}")


def unpack_env_state(p, template):
    """Inverse of :func:`pack_env_state`, using ``template`` (same structure) for types."""
    if isinstance(p, dict) and "__dataclass__" in p:
        vals = {k: unpack_env_state(v, getattr(template, k)) for k, v in p["__dataclass__"].items()}
        return dataclasses.replace(template, **vals)
    if isinstance(p, dict) and "__ndarray__" in p:
        return p["__ndarray__"].numpy().astype(p["dtype"], copy=True)
    if isinstance(p, dict) and "__rng__" in p:
        g = copy.deepcopy(template)
        g.bit_generator.state = json.loads(p["__rng__"])
        return g
    if isinstance(p, dict) and "__tensor__" in p:
        return p["__tensor__"].clone()
    if isinstance(p, dict) and "__seq__" in p:
        items = [unpack_env_state(v, template[i] if template is not None else None)
                 for i, v in enumerate(p["__seq__"])]
        return tuple(items) if p["tuple"] else items
    if isinstance(p, dict) and "__dict__" in p:
        return {k: unpack_env_state(v, template.get(k) if isinstance(template, dict) else None)
                for k, v in p["__dict__"].items()}
    return p
