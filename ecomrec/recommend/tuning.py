"""Hyper-parameter search on valid with Optuna, for every recommender behind one interface.

A search takes the training events and the *validation* targets only: nothing in this module can see
test. Each trial builds a model from the sampled parameters, fits it on the training events and scores
it by validation NDCG@10 (SASRec early-stops on the same targets and reports every epoch to Optuna's
median pruner, which ends unpromising trials early). The first trial is always the model's default
configuration, so a search can only match or improve on it. Trials are seeded (TPE sampler), so a
rerun proposes the same configurations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec.recommend import models as M
from ecomrec.recommend.evaluate import mean_ndcg
from ecomrec.recommend.sasrec import SASRec


@dataclass(frozen=True)
class Space:
    """One model's search: its default parameters (trial 0), how a trial samples parameters, and how
    parameters become a fitted model. `fit(params, trial)` receives the Optuna trial so that iterative
    models can report intermediate values to the pruner."""

    defaults: dict
    sample: Callable  # (optuna.Trial) -> dict
    fit: Callable  # (params: dict, trial: optuna.Trial | None) -> Recommender


@dataclass
class Tuned:
    """The outcome of one search: the study, a table of its trials and the best model, already fitted."""

    name: str
    study: object
    trials: pd.DataFrame
    best_params: dict
    best_valid: float
    model: M.Recommender
    seconds: float
    pruned: int = field(default=0)
    failed: int = field(default=0)


def search(name: str, space: Space, valid_targets: dict, n_trials: int, seed: int = C.SEED,
           pruning: bool = False, progress: bool = False) -> Tuned:
    """Run `n_trials` trials (the first is `space.defaults`) maximising validation NDCG@10."""
    import optuna
    from implicit.recommender_base import ModelFitError

    from ecomrec.progress import progress as progress_bar

    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial's warning would repeat search_table's count
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=5) if pruning else optuna.pruners.NopPruner()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner,
                                study_name=name)
    study.enqueue_trial(space.defaults)
    best: dict = {"value": -np.inf, "model": None}

    def objective(trial):
        params = space.sample(trial)
        start = time.perf_counter()
        try:
            model = space.fit(params, trial)
        except ModelFitError as error:  # a configuration that diverges (e.g. BPR's NaN factors at a high learning
            trial.set_user_attr("failure", str(error))  # rate) is a failed trial, counted in the table, not the
            return float("nan")  # end of the search: optuna marks a NaN value FAIL; `trials` keeps the reason
        value = mean_ndcg(model, valid_targets)
        trial.set_user_attr("fit_seconds", time.perf_counter() - start)
        for attr in ("best_epoch", "stopped"):
            if getattr(model, attr, None) is not None:
                trial.set_user_attr(attr, getattr(model, attr))
        if value > best["value"]:
            best.update(value=value, model=model)
        return value

    start = time.perf_counter()
    with progress_bar(total=n_trials, desc=f"{name} search", disable=not progress) as bar:
        study.optimize(objective, n_trials=n_trials,
                       callbacks=[lambda study, trial: (bar.update(1), bar.set_postfix(best=f"{best['value']:.4f}", refresh=False))])
    trials = study.trials_dataframe(attrs=("number", "value", "params", "state", "user_attrs"))
    trials.columns = [c.replace("params_", "").replace("user_attrs_", "") for c in trials.columns]
    trials["state"] = trials["state"].astype(str)
    pruned = int((trials["state"] == "PRUNED").sum())
    failed = int((trials["state"] == "FAIL").sum())
    if best["model"] is None:
        raise RuntimeError(f"{name}: every trial was pruned or failed")
    return Tuned(name, study, trials, study.best_params, float(study.best_value), best["model"],
                 time.perf_counter() - start, pruned, failed)


def sasrec(items: Sequence, params: dict, epochs: int, seed: int = C.SEED, device: str = "cpu") -> SASRec:
    """An unfitted SASRec with a search's parameters (two attention heads, as in the SASRec paper)."""
    return SASRec(items, hidden=params["hidden"], layers=params["layers"], heads=2, max_len=params["max_len"],
                  dropout=params["dropout"], learning_rate=params["learning_rate"], epochs=epochs, seed=seed, device=device)


EQUAL_STEPS, EQUAL_EPOCHS, OWN_CONVERGENCE = "equal optimiser steps", "equal epochs", "each to its own convergence"


def views_under_budgets(plain: SASRec, own: SASRec, train: pd.DataFrame, views: Sequence[Sequence],
                        valid_targets: dict, patience: int, progress: bool = False) -> dict[str, SASRec]:
    """SASRec on the real sequences plus `views` under three budget rules that tie it to `plain` (SASRec on
    the real sequences alone, fitted with `valid_targets` and `patience`). `own` is the augmented model already
    fitted like plain, with the full epoch budget: **each to its own convergence**. The other two are trained
    with plain's configuration and seed, keeping their best evaluation on valid:

    * **equal optimiser steps** — at most the steps plain ran, evaluated on valid every
      `plain.steps_per_epoch` steps (at the same step counts as plain), with the same patience;
    * **equal epochs** — at most the passes plain ran; a pass now covers the real sequences and the views,
      so it costs more steps. When `own` stopped by patience within that many passes, it *is* this run (the
      same seed draws the same batches, and patience ends it first), so it is returned instead of trained
      twice.
    """
    if plain.best_epoch is None or own.best_epoch is None:
        raise ValueError("plain and own must have been fitted with valid_targets: plain's steps and epochs set the budgets")
    if own.config != plain.config or own.seed != plain.seed:
        raise ValueError("own must have plain's configuration and seed")
    twin = dict(items=plain.items, epochs=plain.epochs, batch_size=plain.batch_size, learning_rate=plain.learning_rate,
                seed=plain.seed, device=plain.device, **plain.config)
    fits = {OWN_CONVERGENCE: own}
    fits[EQUAL_STEPS] = SASRec(**twin).fit(train, extra_sequences=views, valid_targets=valid_targets, patience=patience,
                                           progress=progress, max_steps=plain.steps, eval_every=plain.steps_per_epoch)
    if own.stopped == "patience" and len(own.history) <= len(plain.history):
        fits[EQUAL_EPOCHS] = own
    else:
        fits[EQUAL_EPOCHS] = SASRec(**(twin | {"epochs": len(plain.history)})).fit(
            train, extra_sequences=views, valid_targets=valid_targets, patience=patience, progress=progress)
    return fits


def spaces(items: Sequence, train: pd.DataFrame, valid_targets: dict, seed: int = C.SEED, device: str = "cpu",
           sasrec_epochs: int = 60, patience: int = 5, extra_sequences: Sequence | None = None) -> dict[str, Space]:
    """The course's searches: ItemKNN (neighbours, shrinkage), EASE (λ), ALS and BPR (factors,
    regularisation, iterations; ALS's confidence α, BPR's learning rate), SASRec (dropout, hidden size,
    layers, maximum length, learning rate; epochs by early stopping on `valid_targets`)."""

    def sasrec_fit(params, trial):
        def report(epoch, value):
            if trial is not None:
                trial.report(value, epoch)
                if trial.should_prune():
                    import optuna
                    raise optuna.TrialPruned()
        return sasrec(items, params, sasrec_epochs, seed, device).fit(
            train, extra_sequences=extra_sequences, valid_targets=valid_targets, patience=patience, on_epoch=report)

    return {
        "ItemKNN": Space({"neighbours": 100, "shrinkage": 10.0},
                         lambda t: {"neighbours": t.suggest_int("neighbours", 5, 400, log=True),
                                    "shrinkage": t.suggest_float("shrinkage", 0.0, 200.0)},
                         lambda p, t: M.ItemKNN(items, shrinkage=p["shrinkage"], neighbours=p["neighbours"]).fit(train)),
        "EASE": Space({"regularization": 250.0},
                      lambda t: {"regularization": t.suggest_float("regularization", 1.0, 5_000.0, log=True)},
                      lambda p, t: M.EASE(items, p["regularization"]).fit(train)),
        "ALS": Space({"factors": 64, "regularization": 0.05, "iterations": 30, "alpha": 20.0},
                     lambda t: {"factors": t.suggest_categorical("factors", [32, 64, 128, 256]),
                                "regularization": t.suggest_float("regularization", 1e-3, 10.0, log=True),
                                "iterations": t.suggest_int("iterations", 5, 50),
                                "alpha": t.suggest_float("alpha", 1.0, 100.0, log=True)},
                     lambda p, t: M.ImplicitMF(items, "als", factors=p["factors"], iterations=p["iterations"],
                                               regularization=p["regularization"], alpha=p["alpha"], seed=seed).fit(train)),
        "BPR": Space({"factors": 64, "regularization": 0.01, "iterations": 100, "learning_rate": 0.05},
                     lambda t: {"factors": t.suggest_categorical("factors", [32, 64, 128, 256]),
                                "regularization": t.suggest_float("regularization", 1e-4, 0.3, log=True),
                                "iterations": t.suggest_int("iterations", 50, 400, log=True),
                                "learning_rate": t.suggest_float("learning_rate", 0.005, 0.3, log=True)},
                     lambda p, t: M.ImplicitMF(items, "bpr", factors=p["factors"], iterations=p["iterations"],
                                               regularization=p["regularization"], learning_rate=p["learning_rate"],
                                               seed=seed).fit(train)),
        "SASRec": Space({"dropout": 0.5, "hidden": 64, "layers": 2, "max_len": 50, "learning_rate": 1e-3},
                        lambda t: {"dropout": t.suggest_float("dropout", 0.1, 0.7),
                                   "hidden": t.suggest_categorical("hidden", [32, 64, 128]),
                                   "layers": t.suggest_int("layers", 1, 3),
                                   "max_len": t.suggest_categorical("max_len", [20, 50]),
                                   "learning_rate": t.suggest_float("learning_rate", 3e-4, 5e-3, log=True)},
                        sasrec_fit),
    }


def fusion_weights(models: Sequence[M.Recommender], valid_targets: dict, grid: Sequence[Sequence[float]],
                   k: int = 10) -> tuple[np.ndarray, list[float]]:
    """The weights of `M.WeightedFusion(models, w)` with the best validation NDCG@k among `grid`, and every
    grid point's score. Each model's min-max scaled scores are computed once and reused for every weight
    vector (the result equals fitting and scoring one `WeightedFusion` per grid point)."""
    users = sorted(valid_targets)
    scaled = [M.minmax_per_row(m.masked_scores(users)) for m in models]
    cols = models[0].item_index[[valid_targets[u] for u in users]].to_numpy()
    rows = np.arange(len(users))
    scores = []
    for w in grid:
        w = np.asarray(w, dtype=float)
        if len(w) != len(models) or (w < 0).any() or not (w > 0).any():
            raise ValueError(f"bad weights {w.tolist()} for {len(models)} models")
        fused = sum(weight * s for weight, s in zip(w, scaled) if weight)  # zero weights skipped, as in WeightedFusion
        ranks = (fused >= fused[rows, cols][:, None]).sum(axis=1)
        scores.append(float(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0).mean()))
    return np.asarray(grid[int(np.argmax(scores))], dtype=float), scores
