"""Product search: evaluation on a full catalogue, bi-encoder and cross-encoder fine-tuning.

Training of the equal-budget rows uses sentence-transformers' trainer (multiple-negatives ranking loss with
in-batch negatives) and peft for LoRA (the main bi-encoder and the cross-encoder, selected on valid, are in
`two_tower` and `reranker`); evaluation ranks the
whole catalogue for every test query and scores the run with `ecomrec.metrics`.

Relevance: Home Depot grades run from 1 (irrelevant) to 3 (highly relevant). Ranking metrics use the
gain grade − 1 (so an "irrelevant" judgment earns nothing) and count a product as relevant for
Recall@100 and MRR@10 when its gain is positive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec.metrics import per_query_metrics

#: metric name → (per_query_metrics column, cut-off)
SEARCH_METRICS = {"ndcg@10": ("ndcg", 10), "recall@100": ("recall", 100), "mrr@10": ("mrr", 10)}


def search_qrels(frames: dict[str, pd.DataFrame], split: str) -> pd.DataFrame:
    """query_id, product_id, gain (= relevance − 1) of a split's judgments; queries with no positive gain dropped."""
    judgments = frames[f"homedepot/judgments_{split}"]
    qrels = judgments.assign(gain=judgments[C.COL_RELEVANCE] - 1.0)[[C.COL_QUERY_ID, C.COL_PRODUCT_ID, "gain"]]
    has_gain = qrels.groupby(C.COL_QUERY_ID)["gain"].transform("max") > 0
    return qrels[has_gain].reset_index(drop=True)


def run_frame(query_ids: Sequence, retrieved: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """A long (query_id, product_id, score) run from top-k arrays (one row per query)."""
    retrieved, scores = np.asarray(retrieved), np.asarray(scores, dtype=float)
    if retrieved.shape != scores.shape or len(retrieved) != len(query_ids):
        raise ValueError(f"shapes differ: {len(query_ids)} queries, ids {retrieved.shape}, scores {scores.shape}")
    k = retrieved.shape[1]
    return pd.DataFrame({C.COL_QUERY_ID: np.repeat(np.asarray(query_ids), k), C.COL_PRODUCT_ID: retrieved.ravel(),
                         "score": scores.ravel()})


def evaluate_run(qrels: pd.DataFrame, run: pd.DataFrame) -> pd.DataFrame:
    """Per query: ndcg@10, recall@100, mrr@10 (graded gains; relevant = positive gain)."""
    out = None
    for name, (column, k) in SEARCH_METRICS.items():
        scores = per_query_metrics(qrels, run, k=k, grade="gain")[[C.COL_QUERY_ID, column]].rename(columns={column: name})
        out = scores if out is None else out.merge(scores, on=C.COL_QUERY_ID)
    return out.set_index(C.COL_QUERY_ID)


def is_judged(pairs: pd.DataFrame, judgments: pd.DataFrame) -> np.ndarray:
    """Per row of `pairs` (query_id, product_id, ...): whether `judgments` holds that (query, product) pair."""
    keys = pd.MultiIndex.from_frame(judgments[[C.COL_QUERY_ID, C.COL_PRODUCT_ID]])
    return pd.MultiIndex.from_frame(pairs[[C.COL_QUERY_ID, C.COL_PRODUCT_ID]]).isin(keys)


def top_k(run: pd.DataFrame, depth: int) -> pd.DataFrame:
    """Each query's `depth` best-scored rows of a run (ties: lower product id first), best first."""
    return (run.sort_values([C.COL_QUERY_ID, "score", C.COL_PRODUCT_ID], ascending=[True, False, True], kind="mergesort")
            .groupby(C.COL_QUERY_ID, sort=False).head(depth).reset_index(drop=True))


def condense(run: pd.DataFrame, judgments: pd.DataFrame) -> pd.DataFrame:
    """A run's condensed list (Sakai 2007): only the products judged for its query, in the run's order.

    With unjudged products counted as irrelevant, a system that finds relevant but never-judged products is
    penalised; scoring the judged products alone removes that bias (at the price of an easier task)."""
    return run[is_judged(run, judgments)].reset_index(drop=True)


def dense_scorer(ids: Sequence, query_ids: Sequence, query_texts: Sequence[str], qrels: pd.DataFrame, k: int = 10):
    """`score(model, catalogue_vectors)` → mean NDCG@k of `query_texts` (ids `query_ids`) encoded by `model` and
    searched exactly over `catalogue_vectors` (rows = `ids`): the valid score `train_query_tower` selects on."""
    from ecomrec.models.search import DenseIndex, encode

    query_ids, query_texts = np.asarray(query_ids), list(query_texts)
    if len(query_ids) != len(query_texts):
        raise ValueError(f"{len(query_ids)} query ids but {len(query_texts)} texts")

    def score(model, vectors: np.ndarray) -> float:
        found, scores = DenseIndex(ids, vectors).search(encode(model, query_texts), k=k)
        return float(per_query_metrics(qrels, run_frame(query_ids, found, scores), k=k, grade="gain")["ndcg"].mean())

    return score


def fuse_runs(runs: dict[str, pd.DataFrame], weights: dict[str, float] | None = None, rrf_k: int = 60) -> pd.DataFrame:
    """Fuse (query_id, product_id, score) runs over the union of their lists.

    Without `weights`: reciprocal rank fusion, Σ_runs 1 / (rrf_k + rank), rank 1 = a run's best score
    (ties by list order). With `weights` ({run name: w}): Σ_runs w · min-max(score) per query (a query
    whose scores are all equal scales to 0). A product missing from a run gets nothing from it.
    """
    if weights is not None and set(weights) != set(runs):
        raise ValueError(f"weights name {sorted(weights)}, runs are {sorted(runs)}")
    parts = []
    for name, run in runs.items():
        run = run.copy()
        if weights is None:
            run["rank"] = run.groupby(C.COL_QUERY_ID)["score"].rank(ascending=False, method="first")
            run["part"] = 1.0 / (rrf_k + run["rank"])
        else:
            g = run.groupby(C.COL_QUERY_ID)["score"]
            span = (g.transform("max") - g.transform("min")).replace(0, 1.0)
            run["part"] = weights[name] * (run["score"] - g.transform("min")) / span
        parts.append(run[[C.COL_QUERY_ID, C.COL_PRODUCT_ID, "part"]])
    fused = pd.concat(parts).groupby([C.COL_QUERY_ID, C.COL_PRODUCT_ID], as_index=False)["part"].sum()
    return fused.rename(columns={"part": "score"})


@dataclass
class FitResult:
    """Loss curve, wall time, throughput and trainable parameters of one fine-tuning run."""

    history: pd.DataFrame
    seconds: float
    samples_per_second: float
    trainable_parameters: int
    total_parameters: int


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def add_lora(model, rank: int = 8, alpha: int = 16, dropout: float = 0.1,
             target_modules: Sequence[str] = ("query", "key", "value", "dense")):
    """Wrap a SentenceTransformer's transformer in LoRA adapters (peft); only the adapters train."""
    from peft import LoraConfig, TaskType, get_peft_model

    transformer = model[0]
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        task_type=TaskType.FEATURE_EXTRACTION)
    transformer.model = get_peft_model(transformer.model, config)
    return model


def merge_lora(model):
    """Fold LoRA adapters back into the weights (same outputs, no adapter overhead at inference)."""
    transformer = model[0]
    if hasattr(transformer.model, "merge_and_unload"):
        transformer.model = transformer.model.merge_and_unload()
    return model


def _quiet(trainer):
    """No per-log print lines: the loss curve is returned (and plotted) instead."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def _history(trainer) -> pd.DataFrame:
    rows = [row for row in trainer.state.log_history if "loss" in row and "eval_loss" not in row]
    return pd.DataFrame(rows, columns=["step", "epoch", "loss"]).reset_index(drop=True)


def _fit(trainer, model) -> FitResult:
    """Train quietly and time it; the loss curve and throughput come from the trainer's log."""
    trainer = _quiet(trainer)
    trainable, total = count_parameters(model)
    start = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - start
    return FitResult(_history(trainer), seconds, float(output.metrics.get("train_samples_per_second", 0.0)),
                     trainable, total)


def train_biencoder(model, train_data, out_dir: str | Path, max_steps: int, batch_size: int = 32,
                    learning_rate: float = 5e-5, seed: int = C.SEED, device: str = "cpu",
                    logging_steps: int = 10, gather_across_devices: bool = False) -> FitResult:
    """Fine-tune a SentenceTransformer with MultipleNegativesRankingLoss on (anchor, positive[, negative]).

    Every other positive in the batch is a negative for an anchor (in-batch negatives); a third column
    adds one explicit (hard) negative per anchor. The no-duplicates sampler keeps a batch from holding
    the same text twice, which would turn a positive into a "negative". Launched data-parallel
    (`ecomrec.models.train_ddp`), `batch_size` is per process; `gather_across_devices` then makes every
    process's positives negatives for all anchors, as one large batch would.
    """
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    if max_steps <= 0:
        raise ValueError("max_steps must be positive")
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir), max_steps=max_steps, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, warmup_steps=max(1, max_steps // 10), lr_scheduler_type="linear",
        batch_sampler=BatchSamplers.NO_DUPLICATES, logging_steps=logging_steps, save_strategy="no",
        eval_strategy="no", report_to=[], seed=seed, data_seed=seed, use_cpu=device == "cpu",
        dataloader_num_workers=0, disable_tqdm=True,
    )
    return _fit(SentenceTransformerTrainer(model=model, args=args, train_dataset=train_data,
                                           loss=losses.MultipleNegativesRankingLoss(
                                               model, gather_across_devices=gather_across_devices)), model)


def train_with_lr_search(load: Callable[[], object], train_data, learning_rates: Sequence[float],
                         heldout_loss: Callable[[object], float], *, lora_rank: int | None = None, **train_kwargs):
    """One small learning-rate search on held-out data: a fresh model from `load()` is trained at each of
    `learning_rates` (`train_biencoder`, the same steps and data; LoRA adapters of `lora_rank` trained and merged
    if given), and the one with the lowest `heldout_loss(model)` — valid pairs, never test — is kept.

    Returns (model, its FitResult, its learning rate, {learning rate: held-out loss}); the losing models are
    dropped, so the search costs only their training."""
    if not learning_rates:
        raise ValueError("learning_rates is empty: give at least one rate to train at")
    best, losses = None, {}
    for lr in learning_rates:
        model = load()
        if lora_rank is not None:
            model = add_lora(model, rank=lora_rank)
        fit = train_biencoder(model, train_data, learning_rate=lr, **train_kwargs)
        if lora_rank is not None:
            model = merge_lora(model)
        losses[lr] = heldout_loss(model)
        if best is None or losses[lr] < losses[best[2]]:
            best = (model, fit, lr)
    return (*best, losses)


def heldout_mnrl_loss(model, anchors: Sequence[str], positives: Sequence[str], batch_size: int = 32,
                      scale: float = 20.0) -> float:
    """Mean multiple-negatives ranking loss over fixed consecutive batches of held-out pairs (no training).

    Per-batch training losses are noisy (each batch is different); this one is measured on the same
    batches before and after fine-tuning, so the two numbers are comparable.
    """
    import torch

    if len(anchors) != len(positives) or len(anchors) < batch_size:
        raise ValueError(f"need at least one batch of {batch_size} pairs, got {len(anchors)} / {len(positives)}")
    a = torch.from_numpy(model.encode(list(anchors), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False))
    p = torch.from_numpy(model.encode(list(positives), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False))
    target = torch.arange(batch_size)
    losses = [torch.nn.functional.cross_entropy(scale * a[s:s + batch_size] @ p[s:s + batch_size].T, target).item()
              for s in range(0, len(a) - batch_size + 1, batch_size)]
    return float(np.mean(losses))


def relevance_to_label(relevance) -> np.ndarray:
    """Map Home Depot grades 1–3 onto [0, 1] for the cross-encoder (and back with `label_to_relevance`)."""
    return (np.asarray(relevance, dtype=float) - 1.0) / 2.0


def label_to_relevance(label) -> np.ndarray:
    return 1.0 + 2.0 * np.asarray(label, dtype=float)


def fit_grade_calibration(scores, grades):
    """Isotonic (monotone, so rankings are unchanged) map from cross-encoder scores to relevance grades,
    fitted on held-out judgments: the cross-encoder is trained on judgments *and* random negatives, so its
    raw sigmoid is biased low as a grade estimate. Returns a function scores → grades."""
    from sklearn.isotonic import IsotonicRegression

    scores, grades = np.asarray(scores, dtype=float), np.asarray(grades, dtype=float)
    if scores.shape != grades.shape or scores.ndim != 1:
        raise ValueError(f"need two 1-d arrays of equal length, got {scores.shape} and {grades.shape}")
    if len(np.unique(scores)) < 2:
        raise ValueError("calibration needs at least two distinct scores")
    iso = IsotonicRegression(y_min=float(grades.min()), y_max=float(grades.max()), out_of_bounds="clip")
    iso.fit(scores, grades)
    return lambda new_scores: iso.predict(np.asarray(new_scores, dtype=float))


def score_pairs(cross_encoder, queries: dict, titles: dict, pairs: pd.DataFrame, batch_size: int = 128,
                cache: dict | None = None) -> np.ndarray:
    """Cross-encoder scores of `pairs` (query_id, product_id), in their order; `queries` and `titles` map ids to
    text. `cache` maps (query id, product id) to a score already computed: only the pairs missing from it are
    scored (each once), and it is updated in place. For bfloat16, pass `search.Bf16Autocast(cross_encoder)`."""
    cache = {} if cache is None else cache
    keys = list(zip(pairs[C.COL_QUERY_ID], pairs[C.COL_PRODUCT_ID]))
    missing = list(dict.fromkeys(key for key in keys if key not in cache))
    if missing:
        texts = [(queries[q], titles[p]) for q, p in missing]
        scores = cross_encoder.predict(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
        cache.update(zip(missing, np.asarray(scores, dtype=float).tolist()))
    return np.array([cache[key] for key in keys], dtype=float)


def rerank(cross_encoder, queries: dict, titles: dict, run: pd.DataFrame, depth: int = 100,
           batch_size: int = 128, cache: dict | None = None) -> pd.DataFrame:
    """Re-score each query's top `depth` products of `run` with a cross-encoder; returns a new run.

    `cache` maps (query id, product id) to a score already computed (e.g. for another first stage over the
    same queries); only the pairs missing from it are scored, and it is updated in place.
    """
    top = top_k(run, depth)
    return top.assign(score=score_pairs(cross_encoder, queries, titles, top, batch_size=batch_size, cache=cache))
