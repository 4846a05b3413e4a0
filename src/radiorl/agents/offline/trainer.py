"""The offline training loop shared by MA-CDMP and the offline diffusion baselines.

Every method trained by gradient steps on mini-batches of a fixed dataset (MA-CDMP's
Algorithm 1, MA-Diffuser, MA-DD, MADiff) runs the same loop; only the model, its batches and
its checkpoint layout differ. The loop, per epoch of ``cfg.steps_per_epoch`` steps:

1. draws ``batch = sample(rng)`` and takes one Adam step on ``model.losses(batch, gen)["total"]``
   (``losses`` returns a dict of scalar tensors: ``"total"`` plus named terms, each logged as
   ``train_<name>``), gradient norm clipped to ``cfg.grad_clip`` (0 = off);
2. updates the EMA copy of the weights (decay ``min(cfg.ema, (1+s)/(10+s))`` at step ``s``;
   ``cfg.ema = 0`` = no EMA, the trained weights are used);
3. at the end of the epoch: ``validate(ema)`` (held-out losses, optional), every
   ``cfg.eval_every`` epochs and at the last one ``evaluate(ema)`` (episodes in the simulator,
   optional; must return ``"eval_mean_reward"``), a row of ``training.csv`` and TensorBoard
   scalars, and ``checkpoints/last.pt`` every ``cfg.checkpoint_every`` epochs (EMA weights,
   trained weights, optimizer, history: a killed run continues exactly with ``resume``).

**Checkpoint selection** (``cfg.select_checkpoint``): ``"last"`` (the final EMA weights, the
papers' protocol) or ``"best_eval"``: ``checkpoints/best.pt`` keeps the EMA weights of the
best evaluated epoch (:func:`eval_score`: fewest unstable evaluation episodes, then the highest
evaluation reward), and the final checkpoint is that one. This is
online model selection (it uses simulator episodes, on ``eval_seed``, never the test seeds);
it is off by default and experiments that use it say so.

The random streams are ``numpy.random.default_rng([cfg.seed, epoch])`` for batches and
``torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)`` for noise, so a resumed run
repeats exactly the epochs an uninterrupted run would have done.

``cfg`` must have: ``epochs, steps_per_epoch, lr, ema, grad_clip, seed, checkpoint_every,
eval_every, select_checkpoint``. The checkpoint format is the method's: ``save(path, ema_model,
**extra)`` writes a blob whose ``"model"`` entry is ``ema_model.state_dict()`` plus ``extra``;
``load(path) -> blob`` reads one with ``weights_only=True``; ``check_resume(blob, path)``
raises if the stored run is not this run (config, dataset).
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

SELECTIONS = ("last", "best_eval")


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """``ema ← d·ema + (1−d)·model`` with the warm-up ``d = min(decay, (1+step)/(10+step))``;
    buffers are copied."""
    d = min(decay, (1.0 + step) / (10.0 + step))
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.mul_(d).add_(p.detach(), alpha=1.0 - d)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def check_loop_config(cfg) -> None:
    """Range checks of the loop's fields (call from the method config's ``validate``)."""
    from radiorl.envs.base import check_number
    check_number("epochs", cfg.epochs, low=1, high=100_000, integer=True)
    check_number("steps_per_epoch", cfg.steps_per_epoch, low=1, high=10 ** 7, integer=True)
    check_number("lr", cfg.lr, low=0, high=1, low_open=True)
    check_number("ema", cfg.ema, low=0, high=1)
    if cfg.ema >= 1:
        raise ValueError(f"ema must be in [0, 1) (0 disables the average), got {cfg.ema!r}")
    check_number("grad_clip", cfg.grad_clip, low=0, allow_none=True)
    check_selection_fields(cfg)


def check_selection_fields(cfg) -> None:
    """Range checks of ``checkpoint_every``, ``eval_every`` and ``select_checkpoint`` (also
    used by learners with their own loop, e.g. the d3rlpy ones)."""
    from radiorl.envs.base import check_number
    check_number("checkpoint_every", cfg.checkpoint_every, low=1, integer=True)
    check_number("eval_every", cfg.eval_every, low=0, integer=True)
    if cfg.select_checkpoint not in SELECTIONS:
        raise ValueError(f"select_checkpoint must be one of {list(SELECTIONS)}, got "
                         f"{cfg.select_checkpoint!r}")
    if cfg.select_checkpoint == "best_eval" and not cfg.eval_every:
        raise ValueError("select_checkpoint = 'best_eval' needs evaluation episodes during "
                         "training: set eval_every >= 1")


def eval_score(row: dict) -> tuple[float, float]:
    """Ranking of an evaluated epoch: fewer unstable episodes first (``eval_unstable``, the
    fraction with the runner's unstable verdict; 0 if not reported), then the higher
    ``eval_mean_reward``. (A policy that starves the network can keep a good reward while its
    queues grow, so the reward alone is not a safe criterion.)"""
    return (-float(row.get("eval_unstable", 0.0)), float(row["eval_mean_reward"]))


def best_evaluated(history: list) -> tuple[tuple, int]:
    """``(eval_score, epoch)`` of the best evaluated epoch of ``history`` (``epoch`` 0 if none
    was evaluated)."""
    ev = [(eval_score(h), h["epoch"]) for h in history if "eval_mean_reward" in h]
    return max(ev) if ev else ((-float("inf"), -float("inf")), 0)


def run_epochs(cfg, run_dir, *, start: int, history: list,
               begin_epoch: Callable[[int], object],
               train_step: Callable[[object, int, int], dict],
               end_epoch: Callable[[], dict] | None = None,
               evaluate: Callable[[], dict] | None = None,
               save_best: Callable[[int], None], save_last: Callable[[int, list], None],
               label: str = "", show_progress: bool = True) -> tuple[list, int, tuple]:
    """The epoch skeleton every offline learner shares (this loop's :func:`fit` and the d3rlpy
    learners): epochs ``start .. cfg.epochs - 1`` of ``cfg.steps_per_epoch`` steps.

    Per epoch: ``ctx = begin_epoch(epoch)`` (seeds the epoch's random streams), then per step
    ``train_step(ctx, epoch, step) -> {name: float}`` (averaged over the epoch as
    ``train_<name>``); then ``end_epoch()`` (held-out losses, optional), every ``cfg.eval_every``
    epochs and at the last one ``evaluate()`` (must return ``"eval_mean_reward"``) with
    ``save_best(epoch + 1)`` when :func:`eval_score` improves; the ``training.csv`` row,
    TensorBoard scalars (``run_dir/tb``), a rich progress bar with the step rate, and
    ``save_last(epoch + 1, history)`` every ``cfg.checkpoint_every`` epochs and at the last.

    Returns ``(history, best_epoch, best_score)`` (``best_epoch`` 0 if nothing was evaluated).
    """
    from torch.utils.tensorboard import SummaryWriter
    from radiorl.runtime.executor import progress_bar
    from radiorl.runtime.files import write_csv

    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    tb = SummaryWriter(str(run_dir / "tb"))
    best_score, best_epoch = best_evaluated(history)
    t_start = time.perf_counter()
    wall0 = history[-1]["wall_s"] if history else 0.0
    steps = cfg.steps_per_epoch
    with progress_bar(transient=False) as prog:
        tid = prog.add_task(label, total=cfg.epochs * steps, completed=start * steps,
                            rate="", visible=show_progress)
        for epoch in range(start, cfg.epochs):
            ctx = begin_epoch(epoch)
            acc: dict = {}
            t0 = time.perf_counter()
            for step in range(steps):
                for k, v in train_step(ctx, epoch, step).items():
                    s, n = acc.get(k, (0.0, 0))
                    acc[k] = (s + float(v), n + 1)
                if step % 20 == 19 or step + 1 == steps:
                    prog.update(tid, completed=epoch * steps + step + 1,
                                rate=f"{(step + 1) / (time.perf_counter() - t0):.1f} steps/s")
            row = {"epoch": epoch + 1, "steps": (epoch + 1) * steps,
                   "wall_s": wall0 + time.perf_counter() - t_start,
                   **{f"train_{k}": s / n for k, (s, n) in acc.items()}}
            if end_epoch is not None:
                row.update(end_epoch())
            if evaluate is not None and cfg.eval_every and (
                    (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                row.update(evaluate())
                if eval_score(row) > best_score:
                    best_score, best_epoch = eval_score(row), epoch + 1
                    save_best(epoch + 1)
            history.append(row)
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    tb.add_scalar(k, v, epoch + 1)
            if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                save_last(epoch + 1, history)
                write_csv(run_dir / "training.csv", history)
    tb.close()
    return history, best_epoch, best_score


def fit(model: torch.nn.Module, cfg, *, sample: Callable[[np.random.Generator], dict],
        run_dir, save: Callable, load: Callable[[Path], dict],
        check_resume: Callable[[dict, Path], None] | None = None,
        validate: Callable[[torch.nn.Module], dict] | None = None,
        evaluate: Callable[[torch.nn.Module], dict] | None = None,
        resume=None, final_name: str = "final.pt", label: str = "",
        show_progress: bool = True, log=print) -> dict:
    """Train ``model`` (see the module docstring). ``resume``: a ``last.pt`` or a run folder
    holding ``checkpoints/last.pt``.

    Returns ``{"history", "checkpoint" (the final checkpoint), "best_epoch" (or None),
    "run_dir", "model" (the final weights' module)}``.
    """
    from radiorl.runtime.files import write_csv

    check_loop_config(cfg)
    run_dir = Path(run_dir)
    cks = run_dir / "checkpoints"
    ema = copy.deepcopy(model) if cfg.ema > 0 else model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start, history = 0, []
    if resume is not None:
        from radiorl.runtime.checkpoints import resume_path
        rp = resume_path(resume)
        blob = load(rp)
        if check_resume is not None:
            check_resume(blob, rp)
        if blob.get("optimizer") is None:
            raise ValueError(f"--resume: {rp} is a final checkpoint without optimizer state; "
                             "resume from the run's checkpoints/last.pt")
        model.load_state_dict(blob["train_model"])
        if cfg.ema > 0:
            ema.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        start = int(blob["epoch"])
        history = json.loads(blob["history"])
        log(f"resumed from {rp} at epoch {start}")

    def begin_epoch(epoch):
        model.train()
        return (np.random.default_rng([cfg.seed, epoch]),
                torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch))

    def train_step(ctx, epoch, step):
        rng, gen = ctx
        out = model.losses(sample(rng), gen)
        opt.zero_grad(set_to_none=True)
        out["total"].backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if cfg.ema > 0:
            ema_update(ema, model, cfg.ema, epoch * cfg.steps_per_epoch + step)
        return {k: float(v.detach()) for k, v in out.items()}

    def end_epoch():
        ema.eval()
        return validate(ema) if validate is not None else {}

    history, best_epoch, best_score = run_epochs(
        cfg, run_dir, start=start, history=history, begin_epoch=begin_epoch,
        train_step=train_step, end_epoch=end_epoch,
        evaluate=None if evaluate is None else (lambda: evaluate(copy.deepcopy(ema))),
        save_best=lambda ep: save(cks / "best.pt", ema, epoch=ep),
        save_last=lambda ep, h: save(cks / "last.pt", ema, train_model=model.state_dict(),
                                     optimizer=opt.state_dict(), epoch=ep,
                                     history=json.dumps(h)),
        label=label, show_progress=show_progress)
    final = ema
    chosen = None
    if cfg.select_checkpoint == "best_eval" and best_epoch and (cks / "best.pt").is_file():
        final = copy.deepcopy(ema)
        final.load_state_dict(load(cks / "best.pt")["model"])
        chosen = best_epoch
        log(f"selected the epoch-{best_epoch} weights (evaluation reward {best_score[1]:.3f}, "
            f"unstable fraction {-best_score[0]:.2f})")
    ck = save(cks / final_name, final, epoch=cfg.epochs, history=json.dumps(history),
              selected_epoch=chosen or cfg.epochs)
    write_csv(run_dir / "training.csv", history)
    return {"history": history, "checkpoint": str(ck), "best_epoch": chosen,
            "run_dir": str(run_dir), "model": final}


def plot_history(history: list, path, terms=None, title: str = "", yscale: str = "log"
                 ) -> Path:
    """Loss curves (``train_<term>`` and, if present, ``valid_<term>``; ``terms=None``: every
    ``train_*`` key of the history) on a ``yscale`` axis (``"symlog"`` for losses that can be
    negative) and, if evaluated, the evaluation reward per epoch (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from radiorl.evaluation.report import _save
    if terms is None:
        terms = [k[len("train_"):] for k in dict.fromkeys(k for h in history for k in h
                                                         if k.startswith("train_"))]
    ev = [h for h in history if "eval_mean_reward" in h]
    fig, ax = plt.subplots(1, 2 if ev else 1, figsize=(10 if ev else 5.5, 3.6), squeeze=False)
    for k in terms:
        for kind, style in (("train", "-"), ("valid", "--")):
            pts = [(h["epoch"], h[f"{kind}_{k}"]) for h in history if f"{kind}_{k}" in h]
            if pts:
                ax[0, 0].plot([p[0] for p in pts], [p[1] for p in pts], style,
                              label=f"{kind} {k}")
    if yscale == "symlog":
        ax[0, 0].set_yscale("symlog", linthresh=1e-3)
    else:
        ax[0, 0].set_yscale(yscale)
    ax[0, 0].set_xlabel("epoch")
    ax[0, 0].set_ylabel("loss")
    if terms:
        ax[0, 0].legend(fontsize=7)
    if ev:
        ax[0, 1].plot([h["epoch"] for h in ev], [h["eval_mean_reward"] for h in ev], "o-")
        ax[0, 1].set_xlabel("epoch")
        ax[0, 1].set_ylabel("evaluation reward per frame")
    for a in ax.ravel():
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
