"""EASE, fold-in, early stopping and the valid-only search: the field's leave-one-out protocol."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ecomrec import config as C
from ecomrec.recommend import models as M
from ecomrec.recommend import tuning as T
from ecomrec.recommend.evaluate import mean_ndcg, rank_metrics
from ecomrec.recommend.protocol import LeaveOneOut, fold_in_method, recbole_rule, training_end
from ecomrec.recommend.sasrec import SASRec

ITEMS = ["a", "b", "c", "d", "e", "f"]


def events(pairs, start=0):
    return pd.DataFrame([(u, i, start + t) for t, (u, i) in enumerate(pairs)],
                        columns=[C.COL_USER, C.COL_ITEM, C.COL_TIMESTAMP])


def random_events(users=40, items=12, per_user=5, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"i{j}" for j in range(items)]
    pairs = [(f"u{u}", names[j]) for u in range(users) for j in rng.choice(items, per_user, replace=False)]
    return names, events(pairs)


def test_ease_equals_a_direct_least_squares_solve_per_column():
    names, train = random_events()
    lam = 3.0
    model = M.EASE(names, regularization=lam).fit(train)
    x = model.user_items.toarray().astype(np.float64)
    for j in range(len(names)):
        others = [c for c in range(len(names)) if c != j]
        xo = x[:, others]
        direct = np.linalg.solve(xo.T @ xo + lam * np.eye(len(others)), xo.T @ x[:, j])  # ridge of column j on the rest
        assert np.allclose(model.weights[others, j], direct, atol=1e-8)
        assert model.weights[j, j] == 0
    assert np.allclose(model.scores(["u0"])[0], x[0] @ model.weights)
    with pytest.raises(ValueError):
        M.EASE(names, regularization=0.0)


def test_item_events_shape_the_item_model_but_never_a_history():
    names, train = random_events(seed=1)
    extra = events([("u0", names[-1]), ("u1", names[-1])])
    plain = M.EASE(names, 5.0).fit(train)
    with_extra = M.EASE(names, 5.0).fit(train, item_events=extra)
    assert not np.allclose(plain.weights, with_extra.weights)
    assert (with_extra.user_items != plain.user_items).nnz == 0  # histories untouched
    knn = M.ItemKNN(names, shrinkage=0.0).fit(train, item_events=extra)
    by_hand = sp.csr_matrix(knn.user_items.toarray().astype(bool) | np.isin(
        np.arange(len(names))[None, :], [names.index(names[-1])]) & np.isin(knn.users, ["u0", "u1"])[:, None])
    assert np.allclose(knn.co, (by_hand.T.astype(float) @ by_hand.astype(float)).toarray())
    with pytest.raises(ValueError, match="users outside"):
        M.EASE(names, 5.0).fit(train, item_events=events([("stranger", names[0])]))


def tiny_split():
    """Users walking a, b, c, d, e, f in order (u4 starts at e): train = all but the last two, valid, test."""
    walks = {"u1": "abcdef", "u2": "bcdef", "u3": "abcdef", "u4": "efabcd"}
    rows = [(u, i) for u, walk in walks.items() for i in walk]
    ordered = events(rows)
    last = ordered.groupby(C.COL_USER).cumcount(ascending=False)
    return LeaveOneOut(ordered[last >= 2], ordered[last == 1], ordered[last == 0])


def test_test_time_history_includes_the_validation_item_under_fold_in():
    loo = tiny_split()
    assert loo.targets("valid") == {"u1": "e", "u2": "e", "u3": "e", "u4": "c"} and loo.targets("test")["u1"] == "f"
    for model in (M.ItemKNN(ITEMS, shrinkage=0.0), M.EASE(ITEMS, 1.0), M.Popularity(ITEMS),
                  M.ContentBased(ITEMS, np.eye(len(ITEMS))), M.ImplicitMF(ITEMS, "als", factors=2, iterations=3),
                  SASRec(ITEMS, hidden=8, layers=1, heads=1, max_len=8, epochs=1, batch_size=2)):
        model.fit(loo.train)
        folded, exclude = loo.test_view(model, "fold-in")
        assert exclude is None
        assert folded.histories["u1"][-1] == "e" and model.histories["u1"][-1] == "d"  # the original is untouched
        assert folded.blocked(["u1"])[0, ITEMS.index("e")] and not model.blocked(["u1"])[0, ITEMS.index("e")]
        _, exclude = loo.test_view(model, "training history")
        assert exclude == {"u1": ["e"], "u2": ["e"], "u3": ["e"], "u4": ["c"]}
    # a model that reads the history: the folded-in item changes the scores
    knn = M.ItemKNN(ITEMS, shrinkage=0.0).fit(loo.train)
    assert not np.allclose(knn.scores(["u1"]), loo.test_view(knn, "fold-in")[0].scores(["u1"]))
    content = M.ContentBased(ITEMS, np.eye(len(ITEMS))).fit(loo.train)
    assert content.fold_in(loo.valid).scores(["u1"])[0].argmax() == ITEMS.index("e")  # the latest item weighs most


def test_sasrec_reads_the_validation_item_as_its_last_input():
    loo = tiny_split()
    model = SASRec(ITEMS, hidden=16, layers=1, heads=1, max_len=8, dropout=0.0, epochs=60, batch_size=4,
                   learning_rate=1e-2).fit(pd.concat([loo.train, events([(f"x{k}", i) for k in range(20) for i in "abcdef"], 100)]))
    folded, _ = loo.test_view(model, "fold-in")
    assert folded.scores(["u1"])[0].argmax() == ITEMS.index("f")  # after ..., d, e comes f
    assert model.scores(["u1"])[0].argmax() == ITEMS.index("e")  # from the training history alone: e, two steps short
    ranks = loo.test_ranks(model)
    assert set(ranks) == {"fold-in", "training history"} and ranks["fold-in"]["u1"] == 1
    assert recbole_rule(model) == "fold-in" and recbole_rule(M.EASE(ITEMS)) == "training history"
    assert training_end(model) == "epoch budget: 60 epochs, no validation"  # no valid targets: the budget ended it
    assert training_end(M.ImplicitMF(ITEMS, "bpr", iterations=7)) == "7 iterations (chosen on valid)"
    assert fold_in_method(M.ImplicitMF(ITEMS, "bpr")) == "refit on train + valid"


def test_matrix_factorisation_fold_in_is_a_refit_on_train_plus_valid():
    loo = tiny_split()
    model = M.ImplicitMF(ITEMS, "als", factors=2, iterations=5).fit(loo.train)
    folded = model.fold_in(loo.valid)
    refit = M.ImplicitMF(ITEMS, "als", factors=2, iterations=5).fit(pd.concat([loo.train, loo.valid]))
    assert np.allclose(folded.user_factors, refit.user_factors) and np.allclose(folded.item_factors, refit.item_factors)
    assert not np.allclose(folded.item_factors, model.item_factors)  # the original keeps its own factors


def chain_data(users=60, seed=0):
    """Users walk a fixed cycle of 8 items from a random start: the next item is always predictable."""
    rng = np.random.default_rng(seed)
    names = [f"i{j}" for j in range(8)]
    rows = [(f"u{u}", names[(start + s) % 8]) for u in range(users) for start in [int(rng.integers(8))] for s in range(6)]
    ordered = events(rows)
    last = ordered.groupby(C.COL_USER).cumcount(ascending=False)
    return names, LeaveOneOut(ordered[last >= 2], ordered[last == 1], ordered[last == 0])


def test_early_stopping_restores_the_best_epoch():
    names, loo = chain_data()
    model = SASRec(names, hidden=16, layers=1, heads=1, max_len=8, dropout=0.0, epochs=40, batch_size=16,
                   learning_rate=3e-2)
    seen = []
    model.fit(loo.train, valid_targets=loo.targets("valid"), patience=3, on_epoch=lambda e, v: seen.append((e, v)))
    curve = model.history.set_index("epoch")["valid_ndcg@10"]
    assert [e for e, _ in seen] == curve.index.tolist() and np.allclose([v for _, v in seen], curve.to_numpy())
    assert model.best_epoch == int(curve.idxmax()) and model.best_valid == pytest.approx(curve.max())
    assert model.stopped in ("patience", "epoch budget")
    assert training_end(model) == f"{model.stopped}: kept epoch {model.best_epoch} of {len(model.history)}"
    if model.stopped == "patience":
        assert curve.index.max() == model.best_epoch + 3
    # the restored weights are the best epoch's: valid NDCG now equals the best, not the last, value
    assert mean_ndcg(model, loo.targets("valid")) == pytest.approx(model.best_valid)


def test_early_stopping_keeps_an_earlier_epoch_when_valid_gets_worse():
    names, loo = chain_data()
    scores = iter([0.5, 0.9, 0.1, 0.1, 0.1, 0.1])
    model = SASRec(names, hidden=8, layers=1, heads=1, max_len=8, epochs=6, batch_size=16, learning_rate=0.5)
    snapshots = {}

    def remember(epoch, value):
        snapshots[epoch] = {k: v.clone() for k, v in model.net.state_dict().items()}

    import ecomrec.recommend.evaluate as E
    real = E.rank_metrics

    def scripted(ranks, k=10, recall_k=20):  # valid NDCG by script: best at epoch 2, then three worse epochs
        out = real(ranks, k, recall_k)
        out[f"ndcg@{k}"] = next(scores)
        return out

    E.rank_metrics = scripted
    try:
        model.fit(loo.train, valid_targets=loo.targets("valid"), patience=3, on_epoch=remember)
    finally:
        E.rank_metrics = real
    assert model.best_epoch == 2 and model.stopped == "patience" and model.history["epoch"].max() == 5
    for name, tensor in model.net.state_dict().items():
        assert torch_equal(tensor, snapshots[2][name]), name
    assert not all(torch_equal(t, snapshots[5][n]) for n, t in model.net.state_dict().items())


def torch_equal(a, b):
    import torch
    return bool(torch.equal(a, b))


def test_the_search_starts_from_the_defaults_and_is_reproducible():
    names, loo = chain_data()
    space = T.spaces(names, loo.train, loo.targets("valid"))["ItemKNN"]
    a = T.search("ItemKNN", space, loo.targets("valid"), n_trials=5, seed=3)
    b = T.search("ItemKNN", space, loo.targets("valid"), n_trials=5, seed=3)
    assert a.trials.loc[0, "neighbours"] == 100 and a.trials.loc[0, "shrinkage"] == 10.0
    assert a.best_params == b.best_params and a.best_valid == a.trials["value"].max()
    assert a.best_valid == pytest.approx(mean_ndcg(a.model, loo.targets("valid")))
    with pytest.raises(ValueError):
        T.search("ItemKNN", space, loo.targets("valid"), n_trials=0)


def test_tuning_never_reads_test(monkeypatch):
    """Selection is identical when the test targets are scrambled, and test is scored once, after it."""
    names, loo = chain_data(seed=4)
    rng = np.random.default_rng(0)
    seen = pd.concat([loo.train, loo.valid]).groupby(C.COL_USER)[C.COL_ITEM].agg(set)
    other = [rng.choice(sorted(set(names) - seen[u] - {i})) for u, i in zip(loo.test[C.COL_USER], loo.test[C.COL_ITEM])]
    scrambled_test = loo.test.assign(**{C.COL_ITEM: other})  # every test target replaced by another unseen item
    scrambled = LeaveOneOut(loo.train, loo.valid, scrambled_test)
    import ecomrec.recommend.protocol as P
    searched, tested = [], []
    import ecomrec.recommend.evaluate as E
    real_search, real_test = E.target_ranks, P.target_ranks  # searches score through evaluate.mean_ndcg
    monkeypatch.setattr(E, "target_ranks", lambda *a, **k: searched.append(a[2]) or real_search(*a, **k))
    monkeypatch.setattr(P, "target_ranks", lambda *a, **k: tested.append(a[2]) or real_test(*a, **k))
    chosen = {}
    for split in (loo, scrambled):
        spaces = T.spaces(names, split.train, split.targets("valid"), sasrec_epochs=3)
        for name in ("EASE", "ItemKNN", "SASRec"):
            before = len(tested)
            tuned = T.search(name, spaces[name], split.targets("valid"), n_trials=3, pruning=name == "SASRec")
            assert len(tested) == before  # the search scored nothing on test ...
            assert searched and all(c == split.targets("valid") for c in searched)  # ... only ever valid
            chosen.setdefault(name, []).append(tuned.best_params)
            split.test_ranks(tuned.model, views=("fold-in",))
            assert len(tested) == before + 1 and tested[-1] == split.targets("test")  # test: once, after selection
    for name, (a, b) in chosen.items():
        assert a == b, name


def test_the_fusion_weight_search_equals_one_weighted_fusion_per_grid_point():
    names, loo = chain_data(seed=2)
    parts = [M.ItemKNN(names, shrinkage=0.0).fit(loo.train), M.Popularity(names).fit(loo.train), M.EASE(names, 2.0).fit(loo.train)]
    grid = [(1, 0, 0), (0, 1, 0), (0.5, 0.25, 1.0), (0, 0.5, 0.5)]
    best, scores = T.fusion_weights(parts, loo.targets("valid"), grid)
    direct = [mean_ndcg(M.WeightedFusion(parts, w).fit(loo.train), loo.targets("valid")) for w in grid]
    assert np.allclose(scores, direct) and tuple(best) == tuple(map(float, grid[int(np.argmax(direct))]))
    with pytest.raises(ValueError):
        T.fusion_weights(parts, loo.targets("valid"), [(0, 0, 0)])


def test_a_diverging_trial_is_counted_as_failed_and_the_search_goes_on():
    from implicit.recommender_base import ModelFitError

    names, loo = chain_data()

    def fit(params, trial):
        if params["regularization"] > 10:
            raise ModelFitError("NaN encountered in factors")
        return M.EASE(names, params["regularization"]).fit(loo.train)

    space = T.Space({"regularization": 100.0}, lambda t: {"regularization": t.suggest_float("regularization", 1.0, 5.0)}, fit)
    tuned = T.search("EASE", space, loo.targets("valid"), n_trials=4)
    assert tuned.failed == 1 and len(tuned.trials) == 4 and tuned.best_params["regularization"] <= 5.0
    assert tuned.trials.loc[tuned.trials["state"] == "FAIL", "failure"].tolist() == ["NaN encountered in factors"]
    assert "failed (diverged)" in search_table_columns(tuned)


def search_table_columns(tuned):
    from ecomrec.recommend.report import search_table
    return search_table({"EASE": tuned}).columns


def test_sasrec_scores_do_not_depend_on_how_users_are_grouped_and_padded():
    import torch

    names, loo = chain_data(users=30)
    ragged = pd.concat([loo.train, events([("long", names[j % 8]) for j in range(20)], 1_000)])
    model = SASRec(names, hidden=16, layers=2, heads=2, max_len=12, dropout=0.0, epochs=2, batch_size=8).fit(ragged)
    users = sorted(ragged[C.COL_USER].unique())
    one_by_one, grouped = model.scores(users, chunk=1), model.scores(users, chunk=1_000)
    assert np.allclose(one_by_one, grouped, atol=1e-5)
    # and both equal padding every user to max_len, as a single batch
    seqs = [model._encode(model.histories[u])[-12:] for u in users]
    inputs = torch.zeros((len(users), 12), dtype=torch.long)
    for row, seq in enumerate(seqs):
        inputs[row, :len(seq)] = torch.tensor(seq)
    with torch.inference_mode():
        model.net.eval()
        hidden = model.net(inputs)[torch.arange(len(users)), torch.tensor([len(s) - 1 for s in seqs])]
        padded = model.net.logits(hidden).numpy()
    assert np.allclose(one_by_one, padded, atol=1e-5)


def test_recbole_popularity_counts_batches_not_interactions():
    """RecBole's Pop adds one per batch an item occurs in: counts saturate at the number of batches."""
    items = [f"i{j}" for j in range(6)]
    events = pd.DataFrame({C.COL_USER: [f"u{k}" for k in range(8)] + ["u0"],
                           C.COL_ITEM: ["i0"] * 6 + ["i1", "i2", "i1"]})
    one_batch = M.RecBolePopularity(items, batch_positives=100).fit(events)
    assert one_batch.batches == 1 and np.floor(one_batch.counts).max() == 1  # i0 six times: still one
    per_event = M.RecBolePopularity(items, batch_positives=1).fit(events)
    floor = np.floor(per_event.counts)
    assert per_event.batches == 9 and floor[0] >= 6 and floor.max() <= 9
    assert len(set(per_event.counts)) == len(items)  # ties broken by a fixed order, below one count
    again = M.RecBolePopularity(items, batch_positives=1).fit(events)
    assert np.array_equal(again.counts, per_event.counts)
    assert np.array_equal(M.Popularity(items).fit(events).counts[:3], [6, 2, 1])  # the course's count, for contrast
    with pytest.raises(ValueError, match="batch_positives"):
        M.RecBolePopularity(items, batch_positives=0)


def test_a_step_budget_with_evaluations_every_few_steps():
    names, loo = chain_data()
    config = dict(hidden=8, layers=1, heads=1, max_len=8, dropout=0.0, epochs=30, batch_size=8, learning_rate=3e-2)
    per_epoch = SASRec(names, **config).fit(loo.train, valid_targets=loo.targets("valid"), patience=30)
    stepped = SASRec(names, **config).fit(loo.train, valid_targets=loo.targets("valid"), patience=30,
                                          max_steps=2 * per_epoch.steps_per_epoch + 3, eval_every=per_epoch.steps_per_epoch)
    # evaluated at the same step counts as the epoch-wise run, plus once where the budget ends
    assert stepped.history["steps"].tolist() == [per_epoch.steps_per_epoch, 2 * per_epoch.steps_per_epoch, stepped.steps]
    assert stepped.steps == 2 * per_epoch.steps_per_epoch + 3 and stepped.stopped == "step budget"
    # the same seed draws the same batches: the first two rounds are the epoch-wise run's first two epochs
    assert np.allclose(stepped.history["loss"].iloc[:2], per_epoch.history["loss"].iloc[:2])
    assert np.allclose(stepped.history["valid_ndcg@10"].iloc[:2], per_epoch.history["valid_ndcg@10"].iloc[:2])
    best = stepped.history.loc[stepped.history["valid_ndcg@10"].idxmax()]
    assert (stepped.best_epoch, stepped.best_steps) == (best["epoch"], best["steps"])
    assert stepped.history["passes"].iloc[-1] == pytest.approx(stepped.steps / stepped.steps_per_epoch)
    for bad in (dict(max_steps=0), dict(eval_every=0)):
        with pytest.raises(ValueError, match="at least 1"):
            SASRec(names, **config).fit(loo.train, **bad)


def test_views_under_budgets_tie_the_augmented_run_to_plain_sasrec():
    names, loo = chain_data()
    config = dict(hidden=8, layers=1, heads=1, max_len=8, dropout=0.0, batch_size=8, learning_rate=3e-2)
    plain = SASRec(names, epochs=8, **config).fit(loo.train, valid_targets=loo.targets("valid"), patience=2)
    views = [list(s) for s in loo.train.groupby(C.COL_USER)[C.COL_ITEM].agg(list)] * 2  # many extra sequences
    own = SASRec(names, epochs=8, **config).fit(loo.train, extra_sequences=views, valid_targets=loo.targets("valid"),
                                                patience=2)
    fits = T.views_under_budgets(plain, own, loo.train, views, loo.targets("valid"), patience=2)
    steps, epochs = fits[T.EQUAL_STEPS], fits[T.EQUAL_EPOCHS]
    assert fits[T.OWN_CONVERGENCE] is own
    assert steps.steps_per_epoch > plain.steps_per_epoch  # an epoch over the views is longer
    assert steps.steps <= plain.steps and set(steps.history["steps"]) <= {
        *range(plain.steps_per_epoch, plain.steps + 1, plain.steps_per_epoch), steps.steps}
    assert len(epochs.history) <= len(plain.history) and epochs.steps > len(epochs.history) * plain.steps_per_epoch
    for fit in fits.values():
        assert fit.config == plain.config and fit.seed == plain.seed and fit.best_epoch is not None
    # equal epochs re-uses `own` only where training it would repeat `own` exactly
    trained = SASRec(names, epochs=len(plain.history), **config).fit(
        loo.train, extra_sequences=views, valid_targets=loo.targets("valid"), patience=2)
    assert own.stopped == "patience" and len(own.history) <= len(plain.history)  # these data make it the re-use case
    assert epochs is own
    assert np.allclose(trained.history["valid_ndcg@10"], own.history["valid_ndcg@10"])
    assert np.allclose(trained.history["loss"], own.history["loss"])
    long_own = SASRec(names, epochs=len(plain.history) + 3, **config).fit(
        loo.train, extra_sequences=views, valid_targets=loo.targets("valid"), patience=100)  # runs past plain's epochs
    again = T.views_under_budgets(plain, long_own, loo.train, views, loo.targets("valid"), patience=2)[T.EQUAL_EPOCHS]
    assert again is not long_own and len(again.history) <= len(plain.history)
    assert np.allclose(again.history["valid_ndcg@10"], trained.history["valid_ndcg@10"])
    unvalidated = SASRec(names, epochs=1, **config).fit(loo.train)
    with pytest.raises(ValueError, match="valid_targets"):
        T.views_under_budgets(unvalidated, own, loo.train, views, loo.targets("valid"), patience=2)
    with pytest.raises(ValueError, match="configuration and seed"):
        T.views_under_budgets(plain, SASRec(names, epochs=2, seed=3, **config).fit(
            loo.train, valid_targets=loo.targets("valid")), loo.train, views, loo.targets("valid"), patience=2)


def test_seeds_table_pools_seeds_and_records_every_comparison(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from ecomrec import reporting
    from ecomrec.recommend.report import seeds_table

    monkeypatch.setattr(reporting, "_current", None)
    reporting.start("05_hybrid_recommendation", tmp_path / "metrics")
    users = pd.Index([f"u{i}" for i in range(200)], name=C.COL_USER)
    rng = np.random.default_rng(0)
    plain = [pd.Series(rng.random(200), index=users) for _ in range(2)]
    better = [p + 0.1 + rng.normal(0, 0.02, 200) for p in plain]
    fit = lambda steps, stopped: SimpleNamespace(steps=steps, steps_per_epoch=10, stopped=stopped)
    fits = {"SASRec": [fit(100, "patience"), fit(120, "patience")],
            "SASRec + views, equal epochs": [fit(300, "patience"), fit(250, "epoch budget")]}
    ndcg = {"SASRec": plain, "SASRec + views, equal epochs": [b.iloc[::-1] for b in better]}  # user order must not matter
    table = seeds_table(ndcg, fits, "SASRec", record_as="rec/test_seeds")
    row = table.loc["SASRec + views, equal epochs"]
    assert row["Δ"] == pytest.approx(0.1, abs=0.005) and row["verdict"] == "helped" and row["budget stops"] == 1
    assert (row["steps"], row["passes"], row["seeds"]) == (275, 27.5, 2)
    assert table.loc["SASRec", "NDCG seed min"] == pytest.approx(min(p.mean() for p in plain))
    saved = reporting.load_metrics(tmp_path / "metrics")["05_hybrid_recommendation"]
    key = "rec/test_seeds/SASRec_plus_views_equal_epochs_vs_SASRec/ndcg@10_delta"
    assert saved[key] == pytest.approx(row["Δ"]) and saved[f"{key}_low"] < saved[key] < saved[f"{key}_high"]
    per_seed = [float((b - p).mean()) for b, p in zip(better, plain)]
    assert (saved[f"{key}_seed_min"], saved[f"{key}_seed_max"]) == (pytest.approx(min(per_seed)), pytest.approx(max(per_seed)))
    with pytest.raises(ValueError, match="score series"):
        seeds_table(ndcg, {**fits, "SASRec": fits["SASRec"][:1]}, "SASRec")


def test_paired_compares_on_the_candidates_users_and_records_each_reference(tmp_path, monkeypatch):
    from ecomrec import reporting
    from ecomrec.recommend.report import paired

    monkeypatch.setattr(reporting, "_current", None)
    reporting.start("05_hybrid_recommendation", tmp_path / "metrics")
    users = pd.Index([f"u{i}" for i in range(300)], name=C.COL_USER)
    rng = np.random.default_rng(1)
    base = pd.DataFrame({"ndcg@10": rng.random(300)}, index=users)
    per_user = {"pop": base, "hybrid": base.assign(**{"ndcg@10": base["ndcg@10"] + 0.05}).iloc[::-1],
                "same": base.copy()}
    table = paired(per_user, "hybrid", ["pop", "same"], record_as="rec/test")
    assert table.loc["pop", "Δ"] == pytest.approx(0.05) and table.loc["pop", "verdict"] == "helped"
    saved = reporting.load_metrics(tmp_path / "metrics")["05_hybrid_recommendation"]
    for ref in ("pop", "same"):
        key = f"rec/test/hybrid_vs_{ref}/ndcg@10_delta"
        assert saved[key] == pytest.approx(0.05) and saved[f"{key}_low"] <= saved[key] <= saved[f"{key}_high"]
