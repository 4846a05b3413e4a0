"""run_tasks: local (inline and process pool) and Ray backends give the same results in task
order; on_result sees every index once; task errors propagate; bad arguments are rejected."""
import logging
import os
import sys

import numpy as np
import pytest

from radiorl.runtime.executor import run_tasks

TASKS = list(range(12))


def square_noise(t):
    """Module-level, hence picklable: a deterministic function of the task (seeded draw)."""
    if t == "boom":
        raise ValueError("task boom failed")
    rng = np.random.default_rng(1000 + t)
    return t * t + float(rng.standard_normal())


EXPECTED = [square_noise(t) for t in TASKS]


@pytest.mark.parametrize("workers", [1, 2])
def test_local_results_in_task_order(workers):
    assert run_tasks(square_noise, TASKS, workers=workers, show_progress=False) == EXPECTED


@pytest.mark.parametrize("workers", [1, 2])
def test_local_on_result_every_index_once(workers):
    seen = []
    out = run_tasks(square_noise, TASKS, workers=workers, show_progress=False,
                    on_result=lambda i, r: seen.append((i, r)), keep_results=False)
    assert out is None
    assert sorted(i for i, _ in seen) == list(range(len(TASKS)))
    assert all(r == EXPECTED[i] for i, r in seen)


@pytest.mark.parametrize("workers", [1, 2])
def test_local_task_error_propagates(workers):
    with pytest.raises(ValueError, match="task boom failed"):
        run_tasks(square_noise, [1, "boom", 2], workers=workers, show_progress=False)


def test_empty_task_list():
    assert run_tasks(square_noise, [], workers=2, show_progress=False) == []


@pytest.mark.parametrize("kwargs, field", [
    (dict(backend="dask"), "backend"),
    (dict(backend="Ray"), "backend"),
    (dict(workers=0), "workers"),
    (dict(workers=-1), "workers"),
    (dict(workers=1.5), "workers"),
    (dict(backend="local", address="auto"), "address"),
])
def test_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        run_tasks(square_noise, TASKS, show_progress=False, **kwargs)


def test_ray_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)   # makes `import ray` raise ImportError
    with pytest.raises(RuntimeError, match=r"radiorl\[distributed\]"):
        run_tasks(square_noise, TASKS, backend="ray", show_progress=False)


# --- Ray ------------------------------------------------------------------------------------

def _import_ray():
    """Ray, with this test module's functions pickled by value: Ray workers do not inherit the
    driver's sys.path, so they could not import ``tests.runtime.test_executor`` when pytest runs
    from another directory. (radiorl itself is installed, so workers import it normally.)"""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return ray


def test_ray_starts_and_stops_own_instance():
    """Runs before the module fixture starts Ray: run_tasks starts a local instance sized by
    ``workers`` and shuts it down afterwards (more tasks than 2 x CPUs: bounded submission)."""
    ray = _import_ray()
    if ray.is_initialized():
        pytest.skip("Ray already initialized in this process")
    tasks = list(range(9))
    assert run_tasks(square_noise, tasks, workers=1, backend="ray",
                     show_progress=False) == [square_noise(t) for t in tasks]
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def ray_local():
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_ray_matches_local(ray_local):
    seen = []
    out = run_tasks(square_noise, TASKS, workers=2, backend="ray", show_progress=False,
                    on_result=lambda i, r: seen.append(i))
    assert out == EXPECTED
    assert sorted(seen) == list(range(len(TASKS)))
    assert ray_local.is_initialized()   # an instance we did not start is left running


def test_ray_keep_results_false(ray_local):
    seen = {}
    out = run_tasks(square_noise, TASKS, workers=2, backend="ray", show_progress=False,
                    on_result=seen.__setitem__, keep_results=False)
    assert out is None
    assert seen == dict(enumerate(EXPECTED))


def test_ray_task_error_propagates(ray_local):
    with pytest.raises(ValueError, match="task boom failed"):
        run_tasks(square_noise, [1, "boom", 2], workers=2, backend="ray", show_progress=False)


def test_use_backend_routes_calls_that_name_none(monkeypatch):
    """``use_backend`` sets the backend of calls that pass none (what ``radiorl run --backend``
    uses), restores it after the block, and checks its arguments."""
    from radiorl.runtime.executor import use_backend
    monkeypatch.setitem(sys.modules, "ray", None)   # a Ray call would fail with the hint
    with use_backend("ray"):
        with pytest.raises(RuntimeError, match=r"radiorl\[distributed\]"):
            run_tasks(square_noise, TASKS, show_progress=False)
        # an explicit backend still wins
        assert run_tasks(square_noise, TASKS, backend="local", show_progress=False) == EXPECTED
    assert run_tasks(square_noise, TASKS, show_progress=False) == EXPECTED
    with pytest.raises(ValueError, match="backend"):
        with use_backend("slurm"):
            pass
    with pytest.raises(ValueError, match="address"):
        with use_backend("local", address="auto"):
            pass


def test_use_backend_ray_runs_on_ray(ray_local):
    from radiorl.runtime.executor import use_backend
    with use_backend("ray"):
        assert run_tasks(_in_ray_worker, list(range(4)), workers=2, show_progress=False) \
            == [True] * 4
    # the same call without the block runs in a local process pool
    assert run_tasks(_in_ray_worker, list(range(4)), workers=2, show_progress=False) \
        == [False] * 4


def _in_ray_worker(_):
    """True inside a Ray task, False in a pool process (forked from the driver, where Ray is
    initialized but no task runs)."""
    import ray
    return ray.is_initialized() and ray.get_runtime_context().get_task_id() is not None
