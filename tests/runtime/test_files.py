"""Atomic writes: the content lands whole, nothing temporary is left, and the file gets the
mode a plain ``open()`` would give (not mkstemp's private 0600)."""
import os

import pytest

from radiorl.runtime.files import atomic_write_bytes


def test_atomic_write_content_mode_and_no_leftovers(tmp_path):
    p = atomic_write_bytes(tmp_path / "a" / "x.bin", b"abc")
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"")                              # the mode open() gives under this umask
    assert p.read_bytes() == b"abc"
    assert sorted(f.name for f in p.parent.iterdir()) == ["x.bin"]
    assert (p.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)
    assert (p.stat().st_mode & 0o044) == (0o044 & ~_current_umask())


def _current_umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    p = atomic_write_bytes(tmp_path / "x.bin", b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(p, "not bytes")                  # type: ignore[arg-type]
    assert p.read_bytes() == b"old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["x.bin"]


def test_write_csv_numbers_read_back_as_numbers(tmp_path):
    """numpy scalars are written as plain numbers (numpy 2's repr is 'np.float64(...)')."""
    import csv

    import numpy as np

    from radiorl.runtime.files import write_csv
    p = write_csv(tmp_path / "r.csv", [{"a": np.float64(-1.2345678), "b": np.float32(0.5),
                                        "c": np.int64(3), "d": 2.0, "e": "x"}])
    row = next(csv.DictReader(open(p)))
    assert row == {"a": "-1.234568", "b": "0.5", "c": "3", "d": "2.0", "e": "x"}


def test_append_report_creates_then_appends(tmp_path):
    from radiorl.runtime.files import append_report
    append_report(tmp_path, "## a\n")
    append_report(tmp_path, "## b\n")
    assert (tmp_path / "report.md").read_text() == "## a\n## b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]     # no temporary file left
