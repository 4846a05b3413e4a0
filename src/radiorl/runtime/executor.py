"""Executors: run independent tasks locally (process pool, the default) with a rich progress
bar. Workers use one torch/BLAS thread each (more threads are slower at this problem size)."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterable

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


def _init_worker():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def progress_bar(transient: bool = False) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), transient=transient)


def run_tasks(fn: Callable, tasks: Iterable, workers: int = 1, description: str = "tasks",
              show_progress: bool = True) -> list:
    """Apply ``fn`` to every task (in a process pool when ``workers > 1``); results in task
    order. Exceptions in a task propagate."""
    tasks = list(tasks)
    results = [None] * len(tasks)
    with progress_bar() as prog:
        tid = prog.add_task(description, total=len(tasks), rate="", visible=show_progress)
        import time
        t0 = time.perf_counter()

        def tick():
            el = time.perf_counter() - t0
            done = prog.tasks[0].completed + 1
            prog.update(tid, advance=1, rate=f"{done / max(el, 1e-9):.2f} tasks/s")

        if workers <= 1 or len(tasks) <= 1:
            for i, t in enumerate(tasks):
                results[i] = fn(t)
                tick()
            return results
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            futs = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
            for f in as_completed(futs):
                results[futs[f]] = f.result()
                tick()
    return results
