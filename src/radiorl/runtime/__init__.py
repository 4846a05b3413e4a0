"""Run directories, atomic file writes, seeding, executors."""
from radiorl.runtime.files import atomic_write_bytes, atomic_write_text, make_run_dir, write_csv

__all__ = ["atomic_write_bytes", "atomic_write_text", "make_run_dir", "write_csv"]
