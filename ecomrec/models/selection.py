"""Model selection on valid: evaluate every so often, keep the best checkpoint, stop on patience or budget.

One small object does the bookkeeping that every trainer of the course needs, so a learning curve, the best
step and the reason training ended are recorded the same way everywhere:

>>> stop = EarlyStopping(patience=3)
>>> for step in ...:
...     if stop.update(valid_score, step, state=model.state_dict):   # True: no gain for `patience` evaluations
...         break
>>> stop.restore(model)                                              # the best evaluation's weights
"""

from __future__ import annotations

import math
from typing import Callable

#: the reasons training ends, as the tables print them
PATIENCE, BUDGET = "converged (patience)", "budget"


class EarlyStopping:
    """Tracks the best valid score (higher is better) and a copy of the state it was reached with.

    `update(score, step, state)` records one evaluation; `state` is called only when the score improves on the
    best by more than `min_delta` (copying weights costs memory and time). It returns True once `patience`
    evaluations in a row have not improved. `restore(module)` loads the best state into a torch module (or
    a dict of modules: {name: module}, with `state` returning {name: state_dict}).
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_step, self.best_state = -math.inf, None, None
        self.bad_evaluations = 0
        self.stopped = BUDGET  # until patience ends it

    def update(self, score: float, step: int, state: Callable[[], dict] | None = None) -> bool:
        if not math.isfinite(score):
            raise ValueError(f"valid score at step {step} is {score}: training diverged or the metric is broken")
        if score > self.best + self.min_delta:
            self.best, self.best_step, self.bad_evaluations = float(score), step, 0
            if state is not None:
                self.best_state = _copy(state())
        else:
            self.bad_evaluations += 1
        if self.bad_evaluations >= self.patience:
            self.stopped = PATIENCE
            return True
        return False

    def restore(self, module) -> None:
        if self.best_state is None:
            raise RuntimeError("no state was kept: call update(..., state=...) with an improving score first")
        if isinstance(module, dict):
            for name, part in module.items():
                part.load_state_dict(self.best_state[name])
        else:
            module.load_state_dict(self.best_state)


def _copy(state):
    """A deep copy of a (nested dict of) state dict(s): tensors cloned, so later training cannot change it."""
    if isinstance(state, dict):
        return {key: _copy(value) for key, value in state.items()}
    return state.detach().clone() if hasattr(state, "detach") else state
