"""The generic train-until-valid loop, two-tower training with masked in-batch negatives, and the re-ranker's
hard-negative miner, trainer and valid-chosen interpolation."""

import numpy as np
import pandas as pd
import pytest
import torch

from ecomrec.models.loop import adamw, lr_factor, train_until_valid
from ecomrec.models.reranker import bce_batch_loss, choose_rerank, interpolate, mine_hard_negatives, train_reranker
from ecomrec.models.selection import BUDGET, PATIENCE
from ecomrec.models.two_tower import in_batch_false_negatives, mnrl_batch_loss, subcatalogue_scorer, train_two_tower
from fixture_files import TINY_TITLES as TITLES, TINY_TRAIN as TRAIN, TINY_VALID as VALID, tiny_sentence_model


def test_lr_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, 4, 20, decay=True) == pytest.approx(0.25)
    assert lr_factor(4, 4, 20, decay=True) == pytest.approx(1.0)
    assert lr_factor(12, 4, 20, decay=True) == pytest.approx(0.5)
    assert lr_factor(20, 4, 20, decay=True) == 0.0
    assert lr_factor(12, 4, 20, decay=False) == 1.0


def test_adamw_is_fused_on_a_cpu_and_makes_the_same_updates():
    torch.manual_seed(0)
    nets = [torch.nn.Linear(8, 4) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    fused = adamw([{"params": nets[0].parameters(), "lr": 1e-2}], weight_decay=0.01)
    plain = torch.optim.AdamW([{"params": nets[1].parameters(), "lr": 1e-2}], weight_decay=0.01, foreach=False)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    assert len(fused.param_groups[0]["params"]) == 2  # a group's generator of parameters is read once, not used up
    x = torch.randn(16, 8)
    for _ in range(5):
        for net, optimiser in zip(nets, (fused, plain)):
            optimiser.zero_grad()
            net(x).pow(2).mean().backward()
            optimiser.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(nets[0].parameters(), nets[1].parameters()))
    torch.manual_seed(0)
    assert not torch.allclose(nets[0].weight, torch.nn.Linear(8, 4).weight)  # the steps moved the weights


def test_loop_restores_the_best_evaluation_and_says_why_it_stopped():
    net = torch.nn.Linear(3, 1)
    x, y = torch.randn(32, 3), torch.randn(32)
    scores, weights = iter([0.1, 0.5, 0.2, 0.3, 0.4, 0.0]), []

    def scripted():  # the second evaluation is the best, whatever the weights are
        weights.append(net.weight.detach().clone())
        return next(scores)

    fit = train_until_valid({"net": net}, torch.optim.SGD(net.parameters(), lr=0.1), 32,
                            lambda rows: ((net(x[rows]).squeeze(-1) - y[rows]) ** 2).mean(), scripted,
                            batch_size=8, eval_every=2, patience=3, max_epochs=10)
    assert fit.stopped == PATIENCE and fit.best_step == 2 and fit.pairs_at_best == 16 and len(fit.history) == 5
    assert torch.equal(net.weight, weights[1]) and not torch.equal(weights[1], weights[-1])
    budget = train_until_valid({"net": net}, torch.optim.SGD(net.parameters(), lr=0.1), 32,
                               lambda rows: ((net(x[rows]).squeeze(-1) - y[rows]) ** 2).mean(),
                               lambda: -float(((net(x).squeeze(-1) - y) ** 2).mean()),
                               batch_size=8, eval_every=2, patience=50, max_epochs=1)
    assert budget.stopped == BUDGET and budget.history["pairs"].iloc[-1] == 32
    assert budget.ended_by == f"{BUDGET} (1 passes)" and fit.ended_by == PATIENCE
    assert 0 < budget.training_seconds < budget.seconds
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_until_valid({"net": net}, torch.optim.SGD(net.parameters(), lr=0.1), 4, None, None,
                          batch_size=8, eval_every=1, patience=1, max_epochs=1)


def test_learning_curve_plot_circles_the_kept_checkpoint():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecomrec.models.loop import LoopFit

    history = pd.DataFrame({"step": [0, 5, 10], "pairs": [0, 160, 320], "valid": [0.2, 0.4, 0.3]})
    fit = LoopFit(history, best_step=5, best_valid=0.4, stopped=PATIENCE, seconds=1.0, pairs_per_second=320.0)
    fig, ax = plt.subplots()
    fit.plot(ax, "model", baseline=0.25, baseline_label="before")
    (curve,), (kept,) = ax.get_lines()[:1], ax.collections
    assert curve.get_xdata().tolist() == [0, 160, 320] and curve.get_label() == f"model ({PATIENCE})"
    assert kept.get_offsets().tolist() == [[160.0, 0.4]]
    assert ax.get_lines()[1].get_ydata()[0] == 0.25 and ax.get_lines()[1].get_label() == "before"
    plt.close(fig)


def test_in_batch_false_negatives_masks_known_positives_off_the_diagonal():
    positives = [np.array([5, 7]), np.array([6]), np.array([5])]
    mask = in_batch_false_negatives(np.array([[0, 5], [1, 6], [0, 7], [2, 5]]), positives)
    expected = np.array([[0, 0, 1, 1],   # query 0: product 7 (row 2) and product 5 again (row 3) are its positives
                         [0, 0, 0, 0],
                         [1, 0, 0, 1],
                         [1, 0, 0, 0]], dtype=bool)  # query 2's positive, product 5, is also row 0's
    assert (mask == expected).all()


def test_two_tower_lowers_valid_loss_on_a_tiny_catalogue(tmp_path):
    model = tiny_sentence_model(tmp_path)
    queries = [q for q, _ in TRAIN]
    valid_targets = torch.tensor([p for _, p in VALID])

    def valid_loss(encoder) -> float:  # both towers move: the catalogue is re-encoded at each evaluation
        q = torch.from_numpy(encoder.encode([q for q, _ in VALID], normalize_embeddings=True))
        d = torch.from_numpy(encoder.encode(TITLES, normalize_embeddings=True))
        return torch.nn.functional.cross_entropy(20 * q @ d.T, valid_targets).item()

    before = valid_loss(model)
    fit = train_two_tower(model, queries, TITLES, np.arange(len(TRAIN)), [p for _, p in TRAIN],
                          lambda m: -valid_loss(m), batch_size=4, learning_rate=3e-3, eval_every=3, patience=5,
                          max_epochs=15)
    assert fit.history["valid"].iloc[0] == pytest.approx(-before, abs=1e-5) and fit.best_step > 0
    assert valid_loss(model) == pytest.approx(-fit.best_valid, abs=1e-4)  # the best evaluation's weights restored
    assert -fit.best_valid < 0.8 * before
    with pytest.raises(ValueError, match="outside"):
        train_two_tower(model, queries, TITLES, [0, 1], [0, 99], lambda m: 0.0, batch_size=2)


def test_batch_losses_are_the_masked_mnrl_and_the_soft_label_bce(tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    from ecomrec.models.query_tower import embed, training_examples

    model = tiny_sentence_model(tmp_path)
    queries, titles = ["drill", "paint", "hose"], ["cordless drill", "wall paint", "garden hose", "drill bits"]
    pairs, positives = training_examples(np.array([0, 1, 2, 0]), np.array([0, 1, 2, 3]))
    rows = np.array([0, 1, 2, 3])  # pairs 0 and 3 share query "drill": each one's product is masked out of the other's row
    batch = pairs[rows]
    q = embed(model, [queries[i] for i in batch[:, 0]], False)
    p = embed(model, [titles[j] for j in batch[:, 1]], False)
    logits = 20.0 * q @ p.T
    masked = logits.masked_fill(torch.from_numpy(in_batch_false_negatives(batch, positives)), -torch.inf)
    expected = torch.nn.functional.cross_entropy(masked, torch.arange(len(rows)))
    loss = mnrl_batch_loss(model, queries, titles, pairs, positives)(rows)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() != pytest.approx(torch.nn.functional.cross_entropy(logits, torch.arange(len(rows))).item(), rel=1e-3)

    cross = CrossEncoder(str(tmp_path / "tiny"), num_labels=1, max_length=32)
    labels = [1.0, 0.5, 0.0]
    cross_loss = bce_batch_loss(cross, queries, titles[:3], labels)
    logits = torch.from_numpy(cross.predict(list(zip(queries, titles[:3])), activation_fn=torch.nn.Identity(),
                                            convert_to_numpy=True, show_progress_bar=False)).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[[2, 0]], torch.tensor([0.0, 1.0]))
    cross.eval()  # no dropout: the same logits as predict
    assert cross_loss(np.array([2, 0])).item() == pytest.approx(expected.item(), rel=1e-4)


def test_subcatalogue_keeps_every_judged_product_and_a_seeded_sample():
    ids = np.array([f"p{i}" for i in range(50)])
    qrels = pd.DataFrame({"query_id": ["q1", "q1", "q2"], "product_id": ["p3", "p40", "p7"], "gain": [2.0, 1.0, 1.0]})
    _, sub = subcatalogue_scorer(ids, [f"t{i}" for i in range(50)], ["q1", "q2"], ["a", "b"], qrels, distractors=10, seed=1)
    _, again = subcatalogue_scorer(ids, [f"t{i}" for i in range(50)], ["q1", "q2"], ["a", "b"], qrels, distractors=10, seed=1)
    assert {"p3", "p40", "p7"} <= set(sub) and len(sub) == 13 and (sub == again).all()


def test_miner_drops_judged_products_and_candidates_above_the_margin():
    run = pd.DataFrame({"query_id": ["q"] * 6 + ["r"] * 2, "product_id": list("abcdef") + ["x", "y"],
                        "score": [0.95, 0.9, 0.85, 0.7, 0.6, 0.5, 0.9, 0.8]})
    judged = pd.DataFrame({"query_id": ["q", "r"], "product_id": ["b", "x"]})
    positive = pd.Series({"q": 0.9})  # r has no positive score: no negatives for it
    mined = mine_hard_negatives(run, judged, positive, margin=0.1, per_query=10)
    assert sorted(mined["product_id"]) == ["d", "e", "f"]  # a (0.95) and c (0.85) are within 0.1 of the positive
    assert len(mine_hard_negatives(run, judged, positive, margin=0.1, per_query=2)) == 2
    with pytest.raises(ValueError):
        mine_hard_negatives(run, judged, positive, margin=-1, per_query=2)


def test_reranker_learns_to_order_a_tiny_set(tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    tiny_sentence_model(tmp_path)
    cross = CrossEncoder(str(tmp_path / "tiny"), num_labels=1, max_length=32)
    queries = ["drill", "drill", "paint", "paint", "hose", "hose"] * 4
    titles = ["cordless drill", "garden hose", "wall paint", "claw hammer", "garden hose", "wall paint"] * 4
    labels = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0] * 4

    def margin(model) -> float:  # positive minus negative score, averaged over the three queries
        s = model.predict(list(zip(queries[:6], titles[:6])), convert_to_numpy=True, show_progress_bar=False)
        return float(np.mean(s[0::2] - s[1::2]))

    fit = train_reranker(cross, queries, titles, labels, margin, batch_size=6, learning_rate=2e-3, eval_every=4,
                         patience=4, max_epochs=10)
    assert fit.best_valid > fit.history["valid"].iloc[0] and margin(cross) == pytest.approx(fit.best_valid, abs=1e-4)
    bf16 = train_reranker(cross, queries, titles, labels, margin, batch_size=6, eval_every=2, patience=2, max_epochs=0.5,
                          bf16=True)  # autocast on the forward only: the loss and the weights stay float32
    assert np.isfinite(bf16.history["loss"].dropna()).all() and next(cross.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_reranker(cross, ["a"], ["b"], [2.0], margin)


def test_interpolation_spans_first_stage_to_cross_encoder_and_the_grid_picks_on_qrels():
    first = pd.DataFrame({"query_id": ["q"] * 3, "product_id": ["a", "b", "c"], "score": [3.0, 2.0, 1.0]})
    cross = pd.DataFrame({"query_id": ["q"] * 3, "product_id": ["a", "b", "c"], "score": [0.0, 0.5, 1.0]})
    order = lambda run: run.sort_values("score", ascending=False)["product_id"].tolist()  # noqa: E731
    assert order(interpolate(first, cross, 0.0, 3)) == ["a", "b", "c"]
    assert order(interpolate(first, cross, 1.0, 3)) == ["c", "b", "a"]
    assert order(interpolate(first, cross, 1.0, 2)) == ["b", "a"]  # depth cuts the list before re-scoring
    qrels = pd.DataFrame({"query_id": ["q"], "product_id": ["c"], "gain": [2.0]})
    grid = choose_rerank(first, cross, qrels, depths=[2, 3], weights=[0.0, 1.0])
    assert (grid.iloc[0]["depth"], grid.iloc[0]["weight"]) == (3, 1.0) and len(grid) == 4
    with pytest.raises(ValueError, match="lacks"):
        interpolate(first, cross.head(1), 0.5, 3)
