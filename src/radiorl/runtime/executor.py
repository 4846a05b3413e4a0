"""Executors: run independent tasks locally (process pool, the default) or on Ray (a local Ray
instance or an existing cluster), with a rich progress bar. Workers use one torch/BLAS thread
each (more threads are slower at this problem size).

``fn`` and every task must be picklable: ``fn`` a module-level function (not a lambda or a
closure), tasks plain data or dataclasses. On Ray, functions and task classes are pickled by
reference, so their module must be importable on the workers (anything in ``radiorl`` is; a
script's own functions are not unless its directory is the driver's working directory or on
the workers' ``PYTHONPATH``). Ray needs the optional extra: ``pip install 'radiorl[distributed]'``.
"""
from __future__ import annotations

import contextlib
import logging
import numbers
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

BACKENDS = ("local", "ray")

#: The backend and Ray address a ``run_tasks`` call uses when it names none (set with
#: :func:`use_backend`; ``radiorl run --backend ray`` sets it for a whole experiment).
_DEFAULT = {"backend": "local", "address": None}


@contextlib.contextmanager
def use_backend(backend: str = "local", address: str | None = None):
    """Within the block, ``run_tasks`` calls that pass no ``backend`` use ``backend`` (and
    ``address``): an experiment's every parallel stage (dataset collection, training, test
    episodes) then runs on Ray without each stage taking the option.

    >>> with use_backend("local"):
    ...     run_tasks(abs, [-1, 2], show_progress=False)
    [1, 2]
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; "
                         f"got {backend!r}")
    if address is not None and backend != "ray":
        raise ValueError(f"address is only used with backend='ray' (got backend={backend!r})")
    old = dict(_DEFAULT)
    _DEFAULT.update(backend=backend, address=address)
    try:
        yield
    finally:
        _DEFAULT.update(old)


def _init_worker():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _ray_call(fn: Callable, task: Any):
    """Body of the Ray remote task: one thread per worker, then ``fn(task)``."""
    _init_worker()
    return fn(task)


def progress_bar(transient: bool = False) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), transient=transient)


def run_tasks(fn: Callable, tasks: Iterable, workers: int = 1, description: str = "tasks",
              show_progress: bool = True, backend: str | None = None, address: str | None = None,
              on_result: Callable[[int, Any], None] | None = None,
              keep_results: bool = True) -> list | None:
    """Apply ``fn`` to every task; return the results in task order.

    Args:
        fn: module-level (picklable) function of one task.
        tasks: picklable task objects; ``fn(tasks[i])`` is result ``i``.
        workers: ``>= 1``. ``backend="local"``: process-pool size (``1`` runs inline in this
            process). ``backend="ray"``: CPUs of the local Ray instance started when none is
            running and no ``address`` is given; on an existing instance or cluster its CPUs
            decide the parallelism.
        description: progress-bar label.
        show_progress: draw the rich progress bar.
        backend: ``"local"`` (process pool) or ``"ray"``; ``None``: the one set by
            :func:`use_backend` (default ``"local"``), with its ``address``.
        address: Ray cluster address (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``);
            only with ``backend="ray"``. Without it a local Ray instance is started (or the
            one already initialized in this process is used).
        on_result: ``on_result(index, result)`` is called in this (driver) process as each
            result arrives, in completion order, e.g. to stream results to a file.
        keep_results: return the list of results; ``False`` returns ``None`` and keeps no
            result in memory after ``on_result`` has seen it.

    Exceptions raised in a task propagate (for Ray, the original exception type with the
    Ray error chained as its cause; ``RuntimeError`` when the original cannot be recovered).
    Ray tasks use one CPU each and at most ``2 x`` the cluster CPUs are in flight at once.
    A Ray instance this call started is shut down at the end; one already running is kept.
    """
    if backend is None:
        backend = _DEFAULT["backend"]
        address = _DEFAULT["address"] if address is None else address
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; "
                         f"got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    workers = int(workers)
    if address is not None and backend != "ray":
        raise ValueError(f"address is only used with backend='ray' (got backend={backend!r})")
    tasks = list(tasks)
    results: list | None = [None] * len(tasks) if keep_results else None

    with progress_bar() as prog:
        tid = prog.add_task(description, total=len(tasks), rate="", visible=show_progress)
        t0 = [time.perf_counter()]
        done = [0]

        def restart_clock():   # after backend start-up, so the rate counts only task time
            t0[0] = time.perf_counter()
            prog.reset(tid, total=len(tasks), rate="", visible=show_progress)

        def deliver(i: int, r: Any):
            if results is not None:
                results[i] = r
            if on_result is not None:
                on_result(i, r)
            done[0] += 1
            el = time.perf_counter() - t0[0]
            prog.update(tid, advance=1, rate=f"{done[0] / max(el, 1e-9):.2f} tasks/s")

        if backend == "ray":
            _run_ray(fn, tasks, workers, address, deliver, restart_clock)
        elif workers <= 1 or len(tasks) <= 1:
            for i, t in enumerate(tasks):
                deliver(i, fn(t))
        else:
            _run_pool(fn, tasks, workers, deliver)
    return results


def _run_pool(fn: Callable, tasks: list, workers: int, deliver: Callable[[int, Any], None]):
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker)
    try:
        futs = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
        while futs:
            finished, _ = wait(futs, return_when=FIRST_COMPLETED)
            for f in finished:
                i = futs.pop(f)   # drop the future so its result can be freed after delivery
                deliver(i, f.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)   # don't run the rest after a failure
        raise
    pool.shutdown(wait=True)


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise RuntimeError("backend='ray' needs Ray, which is not installed: "
                           "pip install 'radiorl[distributed]'") from e
    return ray


def _run_ray(fn: Callable, tasks: list, workers: int, address: str | None,
             deliver: Callable[[int, Any], None], ready: Callable[[], None]):
    ray = _import_ray()
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    started = False
    if not ray.is_initialized():
        quiet = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        if address is not None:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=workers, **quiet)
        started = True
    try:
        if not tasks:
            return
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_call)
        fn_ref = ray.put(fn)
        cpus = int(ray.cluster_resources().get("CPU", workers)) or workers
        max_in_flight = max(1, 2 * cpus)
        ready()
        in_flight: dict = {}
        nxt = 0
        try:
            while nxt < len(tasks) or in_flight:
                while nxt < len(tasks) and len(in_flight) < max_in_flight:
                    in_flight[remote.remote(fn_ref, tasks[nxt])] = nxt
                    nxt += 1
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    i = in_flight.pop(ref)
                    deliver(i, _ray_get(ray, ref))
        except BaseException:
            for ref in in_flight:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # pragma: no cover - best effort
                    pass
            raise
    finally:
        if started:
            ray.shutdown()


def _ray_get(ray, ref):
    """``ray.get`` that re-raises a task's original exception (Ray error chained as cause)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from e
        raise RuntimeError(f"Ray task failed: {e}") from e
