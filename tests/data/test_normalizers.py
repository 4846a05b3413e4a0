"""Affine per-dimension normalizers (numpy and torch) and streaming statistics."""
import json

import numpy as np
import pytest
import torch

from radiorl.data import Normalizer, RunningStats

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = np.stack([rng.integers(0, 50, 500), rng.exponential(3.0, 500),
                  np.full(500, 7.0), rng.normal(-2.0, 0.5, 500)], axis=1)
    return x  # [500, 4], third dimension constant


def stats_of(x):
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}


@pytest.mark.parametrize("kind", ["limits", "gaussian"])
def test_round_trip_numpy(data, kind):
    n = Normalizer.from_stats(stats_of(data), kind)
    y = n.normalize(data)
    assert y.shape == data.shape and np.all(np.isfinite(y))
    np.testing.assert_allclose(n.unnormalize(y), data, rtol=1e-12, atol=1e-9)
    assert np.all(y[:, 2] == 0.0)  # constant dimension maps to 0
    if kind == "limits":
        np.testing.assert_allclose(y[:, [0, 1, 3]].min(0), -1.0)
        np.testing.assert_allclose(y[:, [0, 1, 3]].max(0), 1.0)
    else:
        np.testing.assert_allclose(y[:, [0, 1, 3]].mean(0), 0.0, atol=1e-12)
        np.testing.assert_allclose(y[:, [0, 1, 3]].std(0), 1.0, rtol=1e-12)


@pytest.mark.parametrize("kind", ["limits", "gaussian"])
def test_dict_round_trip(data, kind):
    n = Normalizer.from_stats(stats_of(data), kind)
    m = Normalizer.from_dict(json.loads(json.dumps(n.to_dict())))
    assert m.kind == kind
    np.testing.assert_array_equal(m.normalize(data), n.normalize(data))
    np.testing.assert_array_equal(m.stats["std"], n.stats["std"])


@pytest.mark.parametrize("kind", ["limits", "gaussian"])
def test_torch_tensors(data, kind):
    n = Normalizer.from_stats(stats_of(data), kind)
    t = torch.tensor(data, dtype=torch.float32)
    y = n.normalize(t)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), n.normalize(data), rtol=1e-5, atol=1e-5)
    back = n.unnormalize(y)
    assert isinstance(back, torch.Tensor)
    np.testing.assert_allclose(back.numpy(), data, rtol=1e-5, atol=1e-4)
    # integer tensors are promoted to float
    yi = n.normalize(torch.tensor(data.round().astype(np.int64)))
    assert yi.is_floating_point()


@pytest.mark.parametrize("kind", ["limits", "gaussian"])
def test_affine_mean_of_normalized_is_normalized_mean(data, kind):
    n = Normalizer.from_stats(stats_of(data), kind)
    neighbours = data[:5]
    np.testing.assert_allclose(n.normalize(neighbours).mean(0), n.normalize(neighbours.mean(0)),
                               rtol=1e-12, atol=1e-12)
    tn = torch.tensor(neighbours)
    torch.testing.assert_close(n.normalize(tn).mean(0), n.normalize(tn.mean(0)))


def test_scalar_dimension_broadcasts():
    n = Normalizer.from_stats({"min": [0.0], "max": [40.0], "mean": [20.0], "std": [5.0]}, "limits")
    np.testing.assert_allclose(n.normalize(np.array([[0, 20, 40]])), [[-1.0, 0.0, 1.0]])


def test_bad_inputs(data):
    with pytest.raises(ValueError, match="kind must be one of"):
        Normalizer.from_stats(stats_of(data), "cdf")
    with pytest.raises(ValueError, match=r"needs stats \['min', 'max'\]; missing \['max'\]"):
        Normalizer.from_stats({"min": data.min(0)}, "limits")
    with pytest.raises(ValueError, match="max >= min"):
        Normalizer.from_stats({"min": [1.0], "max": [0.0]}, "limits")
    n = Normalizer.from_stats(stats_of(data), "gaussian")
    with pytest.raises(ValueError, match="last axis must have length 4"):
        n.normalize(data[:, :3])
    with pytest.raises(ValueError, match="missing key 'scale'"):
        Normalizer.from_dict({"kind": "limits", "offset": [0.0]})


def test_running_stats_matches_numpy(data):
    rs = RunningStats(4)
    for s in range(0, 500, 61):
        rs.update(data[s: s + 61])
    rs.update(data[:0])
    out = rs.result()
    np.testing.assert_array_equal(out["min"], data.min(0))
    np.testing.assert_array_equal(out["max"], data.max(0))
    np.testing.assert_allclose(out["mean"], data.mean(0), rtol=1e-13)
    np.testing.assert_allclose(out["std"], data.std(0), rtol=1e-12, atol=1e-15)
    assert rs.count == 500
    with pytest.raises(ValueError, match="empty"):
        RunningStats(2).result()
