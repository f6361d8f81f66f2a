"""Tables, paired comparisons and plots for `05`: what a results cell would otherwise spell out inline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec import reporting
from ecomrec.metrics import bootstrap_ci, paired_bootstrap, seed_pooled_paired, verdict
from ecomrec.recommend.evaluate import rank_metrics

# RecBole 1.2.1 on the same Office 5-core file (LS valid_and_test, time order, full ranking, seed 2020),
# test NDCG@10, as measured for issue 24 of this project. An external reference, not a result of this
# course: the tables print it beside the course's own figures, labelled as such.
RECBOLE_REFERENCE = {"SASRec": 0.0471, "ItemKNN": 0.0268, "BPR": 0.0163, "popularity": 0.0025}
# RecBole 1.2.1 run again on the shared file converted row for row in the file's own order (so same-day events
# keep that order: 14 % of users get another test item than under `01`'s hash tie rule), same settings, by
# `scripts/recbole_reference.py` (2026-12-05). The spread between the two external runs is how much the
# conversion alone moves a figure; also external, also labelled.
RECBOLE_RERUN = {"ItemKNN": 0.0229, "popularity": 0.0018}


def summarise(ranks: dict[str, pd.Series], k: int = 10, seed: int = C.SEED,
              record_as: str | None = None) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Per model: every rank metric's mean and 95 % bootstrap interval over users; and the per-user
    metrics (for paired comparisons). With `record_as` (e.g. "rec/test"), each value is recorded under
    `<record_as>/<model>/<metric>` (+ `_ci_low`, `_ci_high`)."""
    rows, per_user = [], {}
    for name, r in ranks.items():
        metrics = rank_metrics(r, k=k)
        per_user[name] = metrics
        row = {"model": name}
        for metric in metrics.columns:
            mean, low, high = bootstrap_ci(metrics[metric].to_numpy(), seed=seed)
            row[metric], row[f"{metric} low"], row[f"{metric} high"] = mean, low, high
            if record_as:
                key = f"{record_as}/{reporting.metric_key(name)}/{metric}"
                reporting.record(key, mean)
                reporting.record(f"{key}_ci_low", low)
                reporting.record(f"{key}_ci_high", high)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model"), per_user


def _record_delta(record_as: str, candidate: str, reference: str, metric: str, d: dict,
                  stats: tuple[str, ...] = ("diff", "low", "high")) -> None:
    """Records `<record_as>/<candidate>_vs_<reference>/<metric>_delta`, then `_<stat>` for each further stat of `d`."""
    key = f"{record_as}/{reporting.metric_key(candidate)}_vs_{reporting.metric_key(reference)}/{metric}_delta"
    for stat in stats:
        reporting.record(key if stat == "diff" else f"{key}_{stat}", d[stat])


def paired(per_user: dict[str, pd.DataFrame], candidate: str, references, metric: str = "ndcg@10",
           seed: int = C.SEED, record_as: str | None = None) -> pd.DataFrame:
    """`candidate` − each reference on the same users: mean difference, paired 95 % interval, verdict.
    With `record_as`, records `<record_as>/<candidate>_vs_<reference>/<metric>_delta` (+ `_low`, `_high`)."""
    new = per_user[candidate][metric]
    rows = []
    for ref in references:
        d = paired_bootstrap(per_user[ref][metric].loc[new.index].to_numpy(), new.to_numpy(), seed=seed)
        rows.append({"reference": ref, "Δ": d["diff"], "low": d["low"], "high": d["high"],
                     "verdict": verdict(d["low"], d["high"])})
        if record_as:
            _record_delta(record_as, candidate, ref, metric, d)
    return pd.DataFrame(rows).set_index("reference")


def seeds_table(ndcg: dict[str, list[pd.Series]], fits: dict[str, list], reference: str, seed: int = C.SEED,
                record_as: str | None = None, k: int = 10) -> pd.DataFrame:
    """One row per trained variant, over training seeds: `ndcg[name]` holds one per-user NDCG@k series per seed
    (the same users, seeds paired by position) and `fits[name]` the fitted SASRec models in the same order.
    Columns: seeds; mean optimiser steps and passes over its sequences; how many seeds ended at a budget rather
    than by patience; test NDCG@k of the seed-averaged per-user scores and the range of the per-seed means;
    against `reference`, the paired Δ and its 95 % interval, the per-seed Δ range and the verdict. With `record_as` (e.g. "rec/test_seeds"), records
    `<record_as>/<name>/ndcg@k` and `<record_as>/<name>_vs_<reference>/ndcg@k_delta` (+ `_low`, `_high`,
    `_seed_min`, `_seed_max`)."""
    rows = []
    for name, series in ndcg.items():
        if len(series) != len(fits[name]):
            raise ValueError(f"{name}: {len(series)} score series but {len(fits[name])} fits")
        users = series[0].index
        row = {"variant": name, "seeds": len(series), "steps": np.mean([f.steps for f in fits[name]]),
               "passes": np.mean([f.steps / f.steps_per_epoch for f in fits[name]]),
               "budget stops": sum(f.stopped != "patience" for f in fits[name]),
               f"test NDCG@{k}": float(np.mean([s.loc[users].to_numpy() for s in series], axis=0).mean()),
               "NDCG seed min": min(float(s.mean()) for s in series), "NDCG seed max": max(float(s.mean()) for s in series)}
        if record_as:
            key = f"{record_as}/{reporting.metric_key(name)}/ndcg@{k}"
            reporting.record(key, row[f"test NDCG@{k}"])
            reporting.record(f"{key}_seed_min", row["NDCG seed min"])
            reporting.record(f"{key}_seed_max", row["NDCG seed max"])
        if name != reference:
            d = seed_pooled_paired([s.loc[users].to_numpy() for s in ndcg[reference]], [s.loc[users].to_numpy() for s in series],
                                   seed=seed)
            row |= {"Δ": d["diff"], "low": d["low"], "high": d["high"], "seed min": d["seed_min"],
                    "seed max": d["seed_max"], "verdict": verdict(d["low"], d["high"])}
            if record_as:
                _record_delta(record_as, name, reference, f"ndcg@{k}", d, ("diff", "low", "high", "seed_min", "seed_max"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def search_table(tuned: dict) -> pd.DataFrame:
    """One row per search: trials run, pruned and failed, the default's and the best valid NDCG@10, the best
    parameters, and the search's wall time."""
    rows = {}
    for name, t in tuned.items():
        done = t.trials[t.trials["state"] == "COMPLETE"]
        rows[name] = {"trials": len(t.trials), "pruned": t.pruned, "failed (diverged)": t.failed,
                      "default valid NDCG@10": float(t.trials.loc[t.trials["number"] == 0, "value"].iloc[0]),
                      "best valid NDCG@10": t.best_valid, "best trial": int(done.loc[done["value"].idxmax(), "number"]),
                      "best parameters": ", ".join(f"{k}={_short(v)}" for k, v in t.best_params.items()),
                      "seconds": t.seconds}
    return pd.DataFrame(rows).T


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot_searches(tuned: dict, axes) -> None:
    """Optuna's optimisation history, one panel per search: each trial's valid NDCG@10 (pruned trials
    hollow, at their last reported value) and the best so far."""
    for ax, (name, t) in zip(np.ravel(axes), tuned.items()):
        trials = t.study.trials
        values = [tr.value if tr.value is not None else (max(tr.intermediate_values.values()) if tr.intermediate_values else np.nan)
                  for tr in trials]
        complete = np.array([str(tr.state).endswith("COMPLETE") for tr in trials])  # failed trials: NaN, not drawn
        numbers = np.arange(len(trials))
        values = np.asarray(values, dtype=float)
        ax.scatter(numbers[complete], values[complete], s=18, label="trial")
        if (~complete).any():
            ax.scatter(numbers[~complete], values[~complete], s=18, facecolors="none", edgecolors="grey", label="pruned")
        best = pd.Series(np.where(complete, values, np.nan)).cummax().ffill()
        ax.step(numbers, best, where="post", color="tab:red", label="best so far")
        ax.set(title=name, xlabel="trial", ylabel="valid NDCG@10")
    np.ravel(axes)[0].legend(fontsize=8)
