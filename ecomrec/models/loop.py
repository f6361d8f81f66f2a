"""Train until valid stops improving: one loop for every trainer of `04` that selects on valid.

`train_until_valid` draws shuffled batches of example rows, asks `batch_loss(rows)` for a loss, steps the
optimiser on a warm-up + linear-decay schedule, and every `eval_every` steps calls `score_valid()` (higher is
better). `ecomrec.models.selection.EarlyStopping` keeps the best evaluation's weights; training ends after
`patience` evaluations without a gain (converged), or at its budget (`max_epochs` passes over the examples,
or `max_seconds`), and the best weights are restored. The learning curve is returned, one row per evaluation,
so a notebook can plot valid score against examples seen and say which of the two ended training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ecomrec import config as C
from ecomrec.models.selection import PATIENCE, EarlyStopping
from ecomrec.progress import progress as progress_bar


@dataclass
class LoopFit:
    """The learning curve (step, pairs seen, seconds since the start, seconds this evaluation took, mean training
    loss since the last evaluation, valid score), the best evaluation, why training stopped ("converged
    (patience)" or "budget") and throughput (pairs per second of the whole run, evaluations included)."""

    history: pd.DataFrame
    best_step: int
    best_valid: float
    stopped: str
    seconds: float
    pairs_per_second: float
    max_epochs: float = 0.0  # the budget, in passes over the examples

    @property
    def ended_by(self) -> str:
        """What ended training, for a table: "converged (patience)" or "budget (N passes)"."""
        return self.stopped if self.stopped == PATIENCE else f"{self.stopped} ({self.max_epochs:g} passes)"

    @property
    def training_seconds(self) -> float:
        """Wall time spent training, evaluations excluded."""
        return float(self.seconds - self.history["eval_seconds"].sum())

    @property
    def pairs_at_best(self) -> int:
        return int(self.history.set_index("step").loc[self.best_step, "pairs"])

    def plot(self, ax, label: str, baseline: float | None = None, baseline_label: str = "") -> None:
        """The learning curve on `ax`: valid score against examples seen (one point per evaluation, labelled with
        `label` and why training stopped), the kept checkpoint circled, and an optional dashed `baseline`."""
        line, = ax.plot(self.history["pairs"], self.history["valid"], marker=".", label=f"{label} ({self.stopped})")
        ax.scatter([self.pairs_at_best], [self.best_valid], s=120, facecolors="none", edgecolors=line.get_color(),
                   label="kept checkpoint")
        if baseline is not None:
            ax.axhline(baseline, color="gray", linestyle="--", label=baseline_label)


def adamw(params, **options) -> torch.optim.AdamW:
    """AdamW over `params` (tensors or parameter groups) with PyTorch's fused kernel where every parameter is a
    floating-point tensor on a CPU or CUDA device, else PyTorch's default implementation. The update rule is the
    same; the fused kernel updates every tensor in one pass instead of a loop of small ones. On the 2-core host of
    the reference run, an update of MiniLM's 22.7 M parameters took 0.016 s against 0.089 s: `04`'s two-tower step
    16 % and its cross-encoder step 19 % shorter (`scripts/bench_optimiser.py`). The Hugging Face trainers of `02`,
    `03` and `04b` already use this kernel by default."""
    params = [group | {"params": list(group["params"])} if isinstance(group, dict) else group for group in params]
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    fused = bool(tensors) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)
    return torch.optim.AdamW(params, fused=fused or None, **options)


def lr_factor(step: int, warmup: int, max_steps: int, decay: bool) -> float:
    """Linear warm-up over `warmup` steps, then constant or (with `decay`) linear decay to 0 at `max_steps`."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (max_steps - step) / max(1, max_steps - warmup)) if decay else 1.0


def train_until_valid(parts: dict[str, torch.nn.Module], optimiser: torch.optim.Optimizer, n_examples: int,
                      batch_loss: Callable[[np.ndarray], torch.Tensor], score_valid: Callable[[], float], *,
                      batch_size: int, eval_every: int, patience: int, max_epochs: float,
                      max_seconds: float | None = None, decay: bool = True, min_delta: float = 0.0,
                      seed: int = C.SEED, progress: bool = False, desc: str = "steps") -> LoopFit:
    """Train `parts` (the modules whose weights the optimiser changes) and keep their best valid state.

    Step 0 is evaluated before any training, so a run that never improves keeps its starting weights.
    """
    if eval_every < 1 or batch_size < 1 or max_epochs <= 0 or patience < 1:
        raise ValueError("eval_every, batch_size and patience must be >= 1 and max_epochs > 0")
    if n_examples < batch_size:
        raise ValueError(f"{n_examples} training examples: fewer than one batch of {batch_size}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    stop = EarlyStopping(patience, min_delta=min_delta)
    max_steps = max(1, int(np.ceil(max_epochs * n_examples / batch_size)))
    warmup = max(1, min(eval_every, max_steps // 10))
    base_lrs = [group["lr"] for group in optimiser.param_groups]
    rows, losses, step, seen = [], [], 0, 0
    start = time.perf_counter()

    def mode(train: bool) -> None:
        for part in parts.values():
            part.train(train)

    def evaluate() -> bool:
        mode(False)
        began = time.perf_counter()
        with torch.no_grad():
            score = float(score_valid())
        rows.append({"step": step, "pairs": seen, "seconds": time.perf_counter() - start,
                     "eval_seconds": time.perf_counter() - began,
                     "loss": float(np.mean(losses)) if losses else np.nan, "valid": score})
        losses.clear()
        mode(True)
        return stop.update(score, step, state=lambda: {name: part.state_dict() for name, part in parts.items()})

    bar = progress_bar(total=max_steps, desc=desc, disable=not progress)
    done = evaluate()
    while not done and step < max_steps:
        order = rng.permutation(n_examples)
        for begin in range(0, n_examples - batch_size + 1, batch_size):
            for group, base in zip(optimiser.param_groups, base_lrs):
                group["lr"] = base * lr_factor(step, warmup, max_steps, decay)
            loss = batch_loss(order[begin:begin + batch_size])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            step, seen = step + 1, seen + batch_size
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", best=f"{stop.best:.4f}", refresh=False)
            over_time = max_seconds is not None and time.perf_counter() - start >= max_seconds
            if step % eval_every == 0 or step >= max_steps or over_time:
                done = evaluate() or over_time
            if done or step >= max_steps:
                break
    bar.close()
    for group, base in zip(optimiser.param_groups, base_lrs):
        group["lr"] = base
    seconds = time.perf_counter() - start
    stop.restore(parts)
    mode(False)
    return LoopFit(pd.DataFrame(rows), int(stop.best_step), float(stop.best), stop.stopped, seconds,
                   seen / seconds if seconds > 0 else 0.0, max_epochs)
