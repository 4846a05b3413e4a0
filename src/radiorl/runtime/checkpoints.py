"""Torch checkpoints: atomic save, safe load.

A checkpoint is a dict of plain containers, strings, numbers and tensors, so it loads with
``torch.load(..., weights_only=True)`` (no unpickling of arbitrary objects). Every checkpoint
carries ``algo`` (which learner wrote it) and ``version`` (the layout of that learner's blob);
:func:`load_checkpoint` checks both before anything else reads it.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from radiorl.runtime.files import atomic_write_bytes


def save_checkpoint(path, blob: dict) -> Path:
    """``torch.save(blob)`` to a temporary file renamed to ``path`` when complete."""
    if not isinstance(blob, dict) or "algo" not in blob or "version" not in blob:
        raise ValueError("a checkpoint blob must be a dict with 'algo' and 'version' keys")
    buf = io.BytesIO()
    torch.save(blob, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path, algo: str, version: int, label: str | None = None) -> dict:
    """Load ``path`` with ``weights_only=True`` and check that it was written by ``algo`` with
    blob layout ``version``; ``label`` names the learner in messages (default ``algo``)."""
    label = label or algo
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:                                        # noqa: BLE001
        raise ValueError(f"checkpoint {path} is not a readable radiorl checkpoint ({e})") from None
    if not isinstance(blob, dict) or blob.get("algo") != algo:
        found = blob.get("algo") if isinstance(blob, dict) else None
        raise ValueError(f"checkpoint {path} is not a {label} checkpoint"
                         + (f" (it was written by {found})" if found else ""))
    if blob.get("version") != version:
        raise ValueError(f"checkpoint {path} has version {blob.get('version')}, expected "
                         f"{version}")
    return blob


def resume_path(resume) -> Path:
    """The checkpoint a ``--resume`` value names: the file itself, or ``<run
    folder>/checkpoints/last.pt`` for a run folder."""
    rp = Path(resume)
    return rp / "checkpoints" / "last.pt" if rp.is_dir() else rp
