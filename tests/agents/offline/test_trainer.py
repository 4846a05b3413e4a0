"""The shared offline training loop: convergence, exact resume, best-epoch selection, config
checks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from radiorl.agents.offline.trainer import check_loop_config, ema_update, fit
from radiorl.runtime.checkpoints import load_checkpoint, save_checkpoint

torch.set_num_threads(1)
W_TRUE = torch.tensor([[1.5, -2.0, 0.5]])


@dataclass
class Cfg:
    epochs: int = 3
    steps_per_epoch: int = 40
    lr: float = 0.05
    ema: float = 0.9
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 1
    eval_every: int = 0
    select_checkpoint: str = "last"


class Linear(torch.nn.Module):
    """y = w·x; losses() as the loop expects (noise from the loop's generator)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1, bias=False)
        torch.nn.init.zeros_(self.lin.weight)

    def losses(self, batch, generator):
        x = torch.as_tensor(batch["x"])
        noise = 0.01 * torch.randn(x.shape[0], 1, generator=generator)
        y = x @ W_TRUE.T + noise
        mse = ((self.lin(x) - y) ** 2).mean()
        return {"total": mse, "mse": mse}


def _sample(rng):
    return {"x": rng.normal(size=(32, 3)).astype(np.float32)}


def _save(path, m, **extra):
    return save_checkpoint(path, {"algo": "toy", "version": 1, "model": m.state_dict(), **extra})


def _load(path):
    return load_checkpoint(path, "toy", 1)


def _fit(cfg, run, **kw):
    torch.manual_seed(0)
    return fit(Linear(), cfg, sample=_sample, run_dir=run, save=_save, load=_load,
               show_progress=False, log=lambda *a: None, **kw)


def test_fit_learns_and_writes_outputs(tmp_path):
    out = _fit(Cfg(epochs=4), tmp_path)
    w = out["model"].lin.weight.detach()
    assert torch.allclose(w, W_TRUE, atol=0.05), w
    h = out["history"]
    assert [r["epoch"] for r in h] == [1, 2, 3, 4]
    assert h[-1]["train_mse"] < 0.1 * h[0]["train_mse"]
    for f in ("checkpoints/last.pt", "checkpoints/final.pt", "training.csv"):
        assert (tmp_path / f).is_file(), f
    assert out["best_epoch"] is None
    final = _load(tmp_path / "checkpoints/final.pt")
    assert torch.equal(final["model"]["lin.weight"], w)


def test_resume_repeats_the_uninterrupted_run_exactly(tmp_path):
    full = _fit(Cfg(epochs=3), tmp_path / "full")
    _fit(Cfg(epochs=2), tmp_path / "part")
    resumed = _fit(Cfg(epochs=3), tmp_path / "part", resume=tmp_path / "part")
    assert torch.equal(full["model"].lin.weight, resumed["model"].lin.weight)
    assert [r["train_mse"] for r in full["history"]] == \
        [r["train_mse"] for r in resumed["history"]]


def test_best_eval_keeps_the_weights_of_the_best_epoch(tmp_path):
    scripted = iter([-3.0, -1.0, -2.0])                   # epoch 2 is the best
    seen = {}

    def evaluate(m):
        seen[len(seen) + 1] = m.lin.weight.detach().clone()
        return {"eval_mean_reward": next(scripted)}

    out = _fit(Cfg(eval_every=1, select_checkpoint="best_eval"), tmp_path, evaluate=evaluate)
    assert out["best_epoch"] == 2
    final = _load(tmp_path / "checkpoints/final.pt")
    assert torch.equal(final["model"]["lin.weight"], seen[2])
    assert final["selected_epoch"] == 2
    assert torch.equal(_load(tmp_path / "checkpoints/best.pt")["model"]["lin.weight"], seen[2])
    assert not torch.equal(seen[2], seen[3])
    # with "last" the same scripted rewards change nothing: the final weights are epoch 3's
    scripted = iter([-3.0, -1.0, -2.0])
    seen.clear()
    _fit(Cfg(eval_every=1), tmp_path / "last", evaluate=evaluate)
    final = _load(tmp_path / "last/checkpoints/final.pt")
    assert torch.equal(final["model"]["lin.weight"], seen[3])


def test_best_eval_ranks_stability_before_reward(tmp_path):
    """An epoch whose evaluation is unstable (e.g. a starving policy that keeps the reward of
    empty queues) is never preferred to a stable one, whatever its reward."""
    scripted = iter([(-3.0, 0.0), (0.0, 0.5), (-2.0, 0.0)])
    seen = {}

    def evaluate(m):
        seen[len(seen) + 1] = m.lin.weight.detach().clone()
        r, u = next(scripted)
        return {"eval_mean_reward": r, "eval_unstable": u}

    out = _fit(Cfg(eval_every=1, select_checkpoint="best_eval"), tmp_path, evaluate=evaluate)
    assert out["best_epoch"] == 3
    final = _load(tmp_path / "checkpoints/final.pt")
    assert torch.equal(final["model"]["lin.weight"], seen[3])


def test_ema_update_warmup_and_decay():
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        a.weight.fill_(0.0)
        b.weight.fill_(1.0)
    ema_update(a, b, decay=0.99, step=0)                  # d = min(.99, 1/10) = 0.1
    assert torch.allclose(a.weight, torch.full_like(a.weight, 0.9))
    ema_update(a, b, decay=0.5, step=10 ** 6)             # d = 0.5
    assert torch.allclose(a.weight, torch.full_like(a.weight, 0.95))


@pytest.mark.parametrize("field,value,msg", [
    ("epochs", 0, "epochs"), ("steps_per_epoch", -1, "steps_per_epoch"), ("lr", 0.0, "lr"),
    ("ema", 1.0, "ema"), ("select_checkpoint", "best", "select_checkpoint"),
    ("select_checkpoint", "best_eval", "eval_every")])
def test_loop_config_errors_name_the_field(field, value, msg):
    cfg = Cfg()
    setattr(cfg, field, value)
    with pytest.raises(ValueError, match=msg):
        check_loop_config(cfg)
