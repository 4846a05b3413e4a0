"""Files: every write goes to a temporary name in the same folder and is renamed when complete,
so an interrupted run never leaves a half-written file in place of a good one."""
from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from pathlib import Path

import yaml


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: mode of written files: what ``open()`` would give (mkstemp's temporary files are 0600)
FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), FILE_MODE)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def append_report(run_dir, text: str) -> Path:
    """Append ``text`` to ``run_dir/report.md`` (created if absent), rewritten atomically, so
    a killed run never leaves a half-written report."""
    md = Path(run_dir) / "report.md"
    return atomic_write_text(md, (md.read_text() if md.exists() else "") + text)


def write_csv(path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Write ``rows`` (dicts) as CSV atomically; columns default to the union in first-seen order."""
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns:
                    columns.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k, "")) for k in columns})
    return atomic_write_text(path, buf.getvalue())


def _fmt(v):
    if isinstance(v, float):            # also numpy floats (repr would be 'np.float64(...)')
        v = float(v)
        return repr(round(v, 6)) if abs(v) < 1e15 else repr(v)
    return v


def make_run_dir(experiment: str, root="runs", config: dict | None = None) -> Path:
    """Create ``<root>/<experiment>/<timestamp>/`` (with ``figures/``) and write ``config.yaml``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / experiment / stamp
    d, i = base, 1
    while d.exists():
        d = base.with_name(f"{stamp}-{i}")
        i += 1
    (d / "figures").mkdir(parents=True)
    if config is not None:
        atomic_write_text(d / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    return d
