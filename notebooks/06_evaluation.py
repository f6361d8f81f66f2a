# %% [markdown]
# # 06 · Evaluation: one protocol, ablations with intervals, and the step to an online test
#
# Chapters `04`–`05` each reported a table. This chapter asks the questions a reader should ask of
# them: are the metrics computed correctly, which ingredient of augmentation made a difference, and how
# would we confirm an offline lift online? It ends by writing `summary.md`, the report's one-page answer.
#
# **Learning objectives.** After this chapter you can
# 1. check ranking metrics against an independent implementation (ranx), graded and binary;
# 2. read a data-efficiency curve: what N real training queries buy, and what synthetic queries add to them,
#    each point trained to convergence, over several seeds;
# 3. run an ablation — one ingredient changed at a time, everything else equal — and read paired
#    bootstrap intervals;
# 4. size an A/B test from an offline lift (power analysis) and simulate team-draft interleaving;
# 5. state only what the numbers support, including where augmentation did not help.

# %% tags=["parameters"]
PROFILE = "smoke"
SEED = 42
DATA_DIR = ""
ARTIFACT_DIR = "artifacts"
REPORT_DIR = "reports"
DEVICE = "auto"
DETERMINISTIC = False  # on CUDA: deterministic kernels, slower (make report DETERMINISTIC=1)
BATCH_SIZE = 32
ALPHA = 0.05
POWER = 0.8
BF16 = "auto"  # bfloat16 autocast for the adapters of the data-efficiency curve and the negatives ablation: "auto" = where the hardware has native bf16 (scripts/bf16_probe.py)

# %%
from ecomrec.notebook import quiet_libraries

quiet_libraries()  # first, before the libraries load: no loading bars or widget warnings on the page

import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from datasets import load_from_disk

from ecomrec import config as C
from ecomrec import online as O
from ecomrec import reporting
from ecomrec.augment import llm
from ecomrec.augment.filters import explode_generated, filter_queries, unfiltered
from ecomrec.augment.generators import for_generation, generation_dtype
from ecomrec.notebook import begin, finish
from ecomrec.data.pairs import RELEVANT, cold_queries, judged_pairs
from ecomrec.metrics import bootstrap_ci, compare_with_ranx, error_bars, paired_bootstrap, verdict
from ecomrec.models import efficiency as E
from ecomrec.models import retrieval as R
from ecomrec.models.selection import PATIENCE
from ecomrec.models.encoders import load_minilm, sentence_encoder
from ecomrec.models.search import BM25Index, DenseIndex, encode
from ecomrec.storage import save_parquet, write_text_atomic
from ecomrec.summary import summary_markdown

profile, device, root, out_dir, frames, notebook_start = begin(
    "06_evaluation", PROFILE, SEED, DEVICE, ARTIFACT_DIR, REPORT_DIR, "evaluation",
    needs=("04_finetuning", "04b_llm_synthesis", "05_hybrid_recommendation", "07_deployment"),
    deterministic=DETERMINISTIC)
recorded = reporting.load_metrics(f"{REPORT_DIR}/{PROFILE}/metrics")
bf16 = C.native_bf16(device) if BF16 == "auto" else bool(BF16)  # printed with the curve's learning rate

# %% [markdown]
# ## 1. Are the metrics right?
#
# `ecomrec.metrics` computes every ranking metric per query from two frames (judgments and a run). Unit
# tests compare it with hand-computed cases and with **ranx** on random runs; here we compare on a real
# run: BM25 over the full catalogue for the test queries. NDCG is graded (gain = grade − 1) and binary
# (gain 1 for every relevant product).

# %%
products = frames["homedepot/products"]
ids, titles = products[C.COL_PRODUCT_ID].to_numpy(), products[C.COL_TITLE].tolist()
query_text = frames["homedepot/queries"].set_index(C.COL_QUERY_ID)[C.COL_QUERY]
qrels = R.search_qrels(frames, "test")
test_ids = qrels[C.COL_QUERY_ID].unique()
bm25 = BM25Index(ids, titles)
bm25_run = R.run_frame(test_ids, *bm25.search_matched(query_text.loc[test_ids].tolist(), k=100))
# ranx takes integer grades. Home Depot grades are averages of three raters, stored rounded (2.33 for 7/3),
# so both implementations get the integer gains 3 × (grade − 1); NDCG is scale-free and the other metrics
# only ask gain > 0, so the scaling changes nothing but the rounding
check_qrels = qrels.assign(gain=(3 * qrels["gain"]).round())
# products sharing no word with the query (score 0) are not retrieved; equal scores get a fixed order
# (score = −position) so that both implementations see exactly the same ranking
check_run = (bm25_run[bm25_run["score"] > 0]
             .sort_values([C.COL_QUERY_ID, "score", C.COL_PRODUCT_ID], ascending=[True, False, True], kind="mergesort"))
check_run = check_run.assign(score=-check_run.groupby(C.COL_QUERY_ID).cumcount().astype(float))
checks = compare_with_ranx(check_qrels, check_run, ks=(10, 100), grade="gain")  # queries without results count 0
reporting.record("eval/test/bm25_vs_ranx/max_abs_difference", float(checks["difference"].max()))
assert checks["difference"].max() < 1e-9, checks
checks.style.format({"ecomrec": "{:.4f}", "ranx": "{:.4f}", "difference": "{:.1e}"})

# %% [markdown]
# ## 2. The data-efficiency curve: what N real queries buy, and what synthetic queries add
#
# The question this course exists to answer is **when LLM-written training data helps**. The literature
# (Promptagator, InPars, GPL) finds synthetic queries help most where real labels are scarce, so the answer is a
# curve, not one row: test NDCG@10 (full catalogue) against the number N of real training queries.
#
# * **Nested subsets.** A seeded permutation of the training queries; the subset of size N is its first N
#   queries with *all* their judged pairs, so each subset holds every smaller one (`efficiency.nested_subsets`).
# * **Rows.** Real only; real + the SmolLM2 LoRA writer's queries (`04b`); real + attribute templates (`02`);
#   real + the from-scratch model (`02`); and, for N ≤ 1,000, real + the SmolLM2 LoRA writer's queries *before* the
#   filter (the filter's ablation, below). Every other synthetic pool is filtered by `02`'s round trip; all are
#   restricted to the **same products**: `04b`'s seeded uniform sample of the catalogue, drawn without looking at the splits.
# * **Synthetic pairs are added, never swapped in:** each source adds the same S pairs to the N real ones (S is
#   the smallest pool, printed below; a pool under one batch is left out and said so). N = 0 is zero-shot MiniLM
#   (no training) and each source alone.
# * **Every point is trained to convergence on valid.** Dozens of points must fit in minutes on a CPU, so each
#   trains two small residual maps on top of frozen MiniLM vectors (every text encoded once):
#   $q' = \mathrm{norm}(q + W_2\,\mathrm{gelu}(W_1 q))$ for queries and $d' = \mathrm{norm}(d + BAd)$ for products,
#   zero at the start (step 0 *is* zero-shot MiniLM), with the softmax loss
#   $-\log \frac{e^{s\,q'\cdot d'_+}}{\sum_{j \in \mathcal{C}} e^{s\,q'\cdot d'_j}}$ over the batch's positives and
#   4,096 uniformly drawn products $\mathcal{C}$. Valid NDCG@10 (all valid queries, whole catalogue) is measured
#   about once per pass; training stops after 5 evaluations without a gain and keeps the best state (or at a budget of
#   100 passes: the table's "budget stops" column counts the seeds that reached it). The learning
#   rate is chosen on valid first: 3·10⁻³, 10⁻³ or 3·10⁻⁴, trained on the N = 1,000 subset (real only, first seed).
#   Where the CPU multiplies bfloat16 natively (`BF16 = "auto"`, printed with the learning rate) the maps train
#   under bf16 autocast, weights and loss in fp32, as the transformers of `02`-`04` do. Every evaluation searches
#   the catalogue exactly: a bf16 product shortlists 40 products per query, they are re-scored in fp32, and a query
#   whose 10th score is not clear of bf16's rounding bound is searched again in fp32 (`search.top_k_inner`).
# * **Seeds.** Below N = all every point is trained with `curve_seeds` seeds; the seed draws the subset, the
#   synthetic sample and the training order. NDCG@10 is the per-query mean over seeds, with a 95 % bootstrap
#   interval over queries; Δ is the paired bootstrap against real only at the same N and seeds; the per-seed
#   Δ range shows how much the seed alone moves it.
# * **Writers that respect N.** A synthetic set used at N may only have been written with knowledge of those N
#   real queries. Templates know none. The from-scratch model and the SmolLM2 LoRA writer were trained on pairs
#   of *all* training queries, so below N = all their rows are **upper bounds** (hollow markers; the table's
#   "upper bound" column): they show what such data can add at best, not what a writer limited to N would add.
#   One writer is built here to respect N: **SmolLM2 few-shot** (`04b`'s prompt with 3 examples), whose examples
#   are drawn, for each seed, from that seed's N = 100 subset only (`efficiency.writer_examples`). It writes
#   queries for a seeded sample of the covered products (the same products for every seed), `02`'s round trip
#   filters them, and each seed's row adds pairs from its own writer. It respects every N ≥ 100; at N = 0 it is
#   an upper bound too (it saw 100 queries).
#
# What the shortcut leaves out: MiniLM's own weights never move. The last cell compares the N = all point with
# `04`'s two-tower model, which fine-tunes every weight on the same pairs.

# %%
FEW_SHOT_N, FEW_SHOT_K, QUERIES_PER_PRODUCT, ROUND_TRIP_K = 100, 3, 2, 10  # 04b's few-shot writer, 02's filter
FEW_SHOT_ROW = f"SmolLM2 few-shot (examples from the first {FEW_SHOT_N})"
UNFILTERED_ROW = "SmolLM2 LoRA (04b), unfiltered"  # the filter's ablation: the same writer's queries before the filter
FILTER_UP_TO = max(n for n in profile.curve_sizes if n is not None and n <= 1_000)  # where real data is scarce
if FEW_SHOT_N not in profile.curve_sizes:
    raise ValueError(f"the few-shot writer's subset N = {FEW_SHOT_N} must be a point of the curve {profile.curve_sizes}")
r04b = recorded["04b_llm_synthesis"]
train_pairs = judged_pairs(frames, "train", RELEVANT)
train_ids = train_pairs[C.COL_QUERY_ID].unique()
covered = llm.coverage_sample(products, int(r04b["llm/all/SmolLM2_LoRA/products"]), seed=SEED)[C.COL_PRODUCT_ID]
curve_seeds = [SEED + i for i in range(profile.curve_seeds)]
prompted = llm.coverage_sample(products[products[C.COL_PRODUCT_ID].isin(covered)],
                               min(profile.curve_fewshot_products, len(covered)), seed=SEED)
base, tokenizer = llm.load_smollm2(root / "llm" / "smollm2")  # 04b's cached copy
writer_model, minilm = for_generation(base, generation_dtype(device)), load_minilm(device)
minilm_index = DenseIndex(ids, np.load(root / "augment" / "minilm_homedepot_products.npy"))  # bm25: section 1's
fewshot, start = {}, time.perf_counter()
for seed in curve_seeds:
    examples = E.writer_examples(train_pairs, E.nested_subsets(train_ids, [FEW_SHOT_N], seed)[FEW_SHOT_N], FEW_SHOT_K, seed)
    writer = llm.ChatQueryGenerator(writer_model, tokenizer, name="smollm2-few-shot", examples=examples, seed=seed,
                                    device=device, batch_size=64, oversample=1)
    written = writer.generate(prompted[C.COL_TITLE].tolist(), QUERIES_PER_PRODUCT, progress=True)
    fewshot[seed] = filter_queries(explode_generated(prompted[C.COL_PRODUCT_ID].to_numpy(), prompted[C.COL_TITLE].tolist(),
                                                     written, FEW_SHOT_ROW), bm25, minilm_index, minilm, k=ROUND_TRIP_K)
    print(f"seed {seed}: examples {examples}\n  {len(fewshot[seed]):,} queries, {fewshot[seed]['keep'].mean():.0%} kept")
fewshot_seconds = time.perf_counter() - start

# %%
reporting.record(f"curve/train/{reporting.metric_key(FEW_SHOT_ROW)}/seconds", fewshot_seconds)
reporting.record(f"curve/train/{reporting.metric_key(FEW_SHOT_ROW)}/products_per_second",
                 len(prompted) * len(curve_seeds) / fewshot_seconds)
minutes_04b = r04b["llm/all/smollm2/minutes"]
smollm2_minutes = minutes_04b + fewshot_seconds / 60  # every SmolLM2 second of the course
reporting.record("curve/all/smollm2_04b_and_06/minutes", smollm2_minutes)
print(f"{len(prompted):,} products × {len(curve_seeds)} seeds in {fewshot_seconds:.0f} s; all SmolLM2 work of the course "
      f"(04b's {minutes_04b:.1f} min and this writer's {fewshot_seconds / 60:.1f}): {smollm2_minutes:.1f} min "
      f"on {device} ({'within' if smollm2_minutes <= 25 else 'over'} the full profile's 25-minute target for 2 CPU cores)")

# %%
synthetic = pd.read_parquet(root / "augment" / "synthetic_queries_homedepot.parquet")
smollm2 = pd.read_parquet(root / "llm" / "smollm2_queries_homedepot.parquet")
if not smollm2[C.COL_PRODUCT_ID].isin(covered).all():
    raise RuntimeError("04b's SmolLM2 queries are not on the coverage sample recomputed here: re-run 04b")
pools = {"SmolLM2 LoRA (04b)": smollm2[smollm2["keep"]], UNFILTERED_ROW: unfiltered(smollm2),
         "templates (02)": synthetic[synthetic["keep"] & (synthetic["generator"] == "templates")],
         "scratch model (02)": synthetic[synthetic["keep"] & (synthetic["generator"] == "scratch-sample")]}
pools = {name: pool[pool[C.COL_PRODUCT_ID].isin(covered)] for name, pool in pools.items()}
fewshot_pools = {seed: frame[frame["keep"]] for seed, frame in fewshot.items()}  # one per seed
save_parquet(pd.concat(fewshot, names=["seed", None]).reset_index(level=0), out_dir / "fewshot_queries_homedepot.parquet")
writer_saw = {"SmolLM2 LoRA (04b)": len(train_ids), UNFILTERED_ROW: len(train_ids), "templates (02)": None,
              "scratch model (02)": len(train_ids)}
every_pool = pools | {FEW_SHOT_ROW: min(fewshot_pools.values(), key=len)}  # the few-shot row: its smallest seed's pool
for name, pool in every_pool.items():
    reporting.record(f"curve/train/{reporting.metric_key(name)}/pool_pairs", len(pool))
    reporting.record(f"curve/train/{reporting.metric_key(name)}/pool_products", pool[C.COL_PRODUCT_ID].nunique())
curve_left_out = {name: len(pool) for name, pool in every_pool.items() if len(pool) < BATCH_SIZE}
for name, size in curve_left_out.items():
    print(f"LEFT OUT: real + {name} — its pool on the covered products has {size:,} pairs, fewer than one batch")
pools = {name: pool for name, pool in pools.items() if name not in curve_left_out}
fewshot_pools = {} if FEW_SHOT_ROW in curve_left_out else fewshot_pools
S = min(len(pool) for pool in [*pools.values(), *fewshot_pools.values()]) if pools or fewshot_pools else 0
reporting.record("curve/train/all/synthetic_pairs_added", S)
reporting.record("curve/train/all/rows_left_out", len(curve_left_out))
reporting.record("curve/train/all/covered_products", len(covered))
print(f"{len(train_ids):,} real training queries ({len(train_pairs):,} pairs); {len(covered):,} covered products; "
      f"S = {S:,} synthetic pairs added per row; pools: " + ", ".join(f"{n} {len(p):,}" for n, p in pools.items())
      + "".join(f", {FEW_SHOT_ROW} seed {seed} {len(p):,}" for seed, p in fewshot_pools.items()))

# %%
row_of_product = pd.Series(np.arange(len(ids)), index=ids)
row_of_query = pd.Series(np.arange(len(train_ids)), index=train_ids)
catalogue = np.load(root / "augment" / "minilm_homedepot_products.npy")  # 02's zero-shot MiniLM catalogue pass
valid_qrels = R.search_qrels(frames, "valid")
valid_ids = valid_qrels[C.COL_QUERY_ID].unique()
real_vectors, valid_vectors, test_vectors = (encode(minilm, query_text.loc[q].tolist(), progress=True)
                                             for q in (train_ids, valid_ids, test_ids))


def as_source(pool: pd.DataFrame, saw: int | None) -> E.Source:
    return E.Source(encode(minilm, pool[C.COL_QUERY].tolist()), row_of_product[pool[C.COL_PRODUCT_ID]].to_numpy(), saw)


sources = {name: as_source(pool, writer_saw[name]) for name, pool in pools.items()}
if fewshot_pools:
    sources[FEW_SHOT_ROW] = {seed: as_source(pool, FEW_SHOT_N) for seed, pool in fewshot_pools.items()}
valid_scorer, test_scorer = E.NdcgScorer(valid_ids, ids, valid_qrels), E.NdcgScorer(test_ids, ids, qrels)


def score_valid(fit) -> float:
    return float(valid_scorer(fit.queries(valid_vectors), fit.catalogue(catalogue)).mean())


real_pairs = (row_of_query[train_pairs[C.COL_QUERY_ID]].to_numpy(), row_of_product[train_pairs[C.COL_PRODUCT_ID]].to_numpy())
n_search = min(1_000, len(train_ids))
in_search = np.isin(train_pairs[C.COL_QUERY_ID], E.nested_subsets(train_ids, [n_search], SEED)[n_search])
lr_valid = {lr: E.train_adapters(real_vectors, real_pairs[0][in_search], real_pairs[1][in_search], catalogue, score_valid,
                                 learning_rate=lr, bf16=bf16, seed=SEED).best_valid for lr in (3e-3, 1e-3, 3e-4)}
CURVE_LR = max(lr_valid, key=lr_valid.get)
for lr, value in lr_valid.items():
    reporting.record(f"curve/valid/lr_{lr:g}/ndcg@10", value)
reporting.record("curve/valid/all/learning_rate", CURVE_LR)
print(f"learning rate on valid (real only, N = {n_search:,}): " + ", ".join(f"{lr:g} → {v:.4f}" for lr, v in lr_valid.items())
      + f"; the curve uses {CURVE_LR:g}; bf16 autocast {'on' if bf16 else 'off'} (BF16 = {BF16!r})")

# %%
scores, curve_fits = E.run_curve(
    real_vectors, train_ids, real_pairs, sources, catalogue, profile.curve_sizes, curve_seeds, S, score_valid=score_valid,
    score_test=lambda fit: test_scorer(fit.queries(test_vectors), fit.catalogue(catalogue)),
    zero_shot_test=test_scorer(test_vectors, catalogue), learning_rate=CURVE_LR, bf16=bf16, progress=True,
    up_to={name: FILTER_UP_TO for name in sources if name == UNFILTERED_ROW})
converged = np.mean([fit.stopped == PATIENCE for fit in curve_fits.values()])
reporting.record("curve/valid/all/converged_share", float(converged))
curve_seconds = {"seconds": sum(f.seconds for f in curve_fits.values()),
                 "eval_seconds": sum(f.history["eval_seconds"].sum() for f in curve_fits.values())}
for stat, value in curve_seconds.items():
    reporting.record(f"curve/train/all/{stat}", float(value))
print(f"{len(curve_fits)} points trained in {curve_seconds['seconds']:.0f} s, {curve_seconds['eval_seconds']:.0f} s of it "
      f"valid evaluations; {converged:.0%} stopped by patience (converged), the rest by their budget")

# %%
curve = E.curve_table(scores, sources, curve_fits, seed=SEED)  # "budget stops": seeds that hit their budget
n_all = len(train_ids)
E.record_curve(curve, lambda r: [reporting.metric_key(f"{r['row']} N={r['N']}")]
               + ([reporting.metric_key(f"{r['row']} all")] if r["N"] == n_all else []))
reporting.record("curve/train/all/sizes", len(curve["N"].unique()))
curve.style.format({c: "{:.3f}" for c in ("NDCG@10", "low", "high")} | {c: "{:+.3f}" for c in
                   ("Δ", "Δ low", "Δ high", "Δ seed min", "Δ seed max")} | {"N": "{:,}"}, na_rep="")

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 4.2))
position = {n: i for i, n in enumerate(sorted(curve["N"].unique()))}
for (name, rows), colour in zip(curve.groupby("row", sort=False), plt.cm.tab10.colors):
    shift = 0.06 * (list(curve["row"].unique()).index(name) - (curve["row"].nunique() - 1) / 2)
    for ax, (y, low, high) in zip(axes, (("NDCG@10", "low", "high"), ("Δ", "Δ low", "Δ high"))):
        rows_here = rows.dropna(subset=[y])
        x = rows_here["N"].map(position) + shift
        ax.errorbar(x, rows_here[y], yerr=error_bars(rows_here[y], rows_here[low], rows_here[high]), color=colour,
                    capsize=3, label=name, lw=1)
        ax.scatter(x, rows_here[y], edgecolors=[colour], zorder=3,
                   facecolors=["white" if bound else colour for bound in rows_here["upper bound"]])
axes[1].axhline(0, color="black", lw=0.8)
for ax, label in zip(axes, ("test NDCG@10 (95 % CI, mean over seeds)", "Δ NDCG@10 vs real only (paired 95 % CI)")):
    ax.set_xticks(range(len(position)), [f"{n:,}" for n in position])
    ax.set(xlabel="real training queries N", ylabel=label)
axes[0].legend(fontsize=8, title="hollow: upper bound (writer saw all N)", title_fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Every point above is a model selected on valid; its learning curve shows whether it had converged. Left: the
# real-only points at every N; right: every row at one small N, where synthetic pairs are most of the data
# (first seed of each).

# %%
small_n = sorted(n for n in curve["N"].unique() if n > 0)[0]
fig, axes = plt.subplots(1, 2, figsize=(14, 3.8), sharey=True)
for (name, n, seed), fit in curve_fits.items():
    if seed == SEED and name == "real only":
        axes[0].plot(fit.history["pairs"], fit.history["valid"], marker=".", label=f"N = {n:,}")
    if seed == SEED and n == small_n:
        axes[1].plot(fit.history["pairs"], fit.history["valid"], marker=".", label=f"{name} ({fit.stopped})")
for ax, title in zip(axes, ("real only, every N", f"every row at N = {small_n:,}")):
    ax.set(xscale="symlog", xlabel="training pairs seen", ylabel="valid NDCG@10", title=f"learning curves: {title}")
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# What the curve says, computed from the recorded values (a verdict is read from each paired interval with the
# course's one rule, `ecomrec.metrics.verdict`):

# %%
for name in sources:
    print(f"real + {name}: {E.verdict_line(curve, name)}")
real_only = curve[curve["row"] == "real only"].set_index("N")["NDCG@10"]
two_tower = recorded["04_finetuning"]["search/test/MiniLM_plus_MNRL_early-stopped/ndcg@10"]
reporting.record("curve/test/two_tower_minus_adapters/ndcg@10", two_tower - real_only[n_all])
print(f"real only: {real_only[0]:.3f} zero-shot → {real_only[n_all]:.3f} with all {n_all:,} queries (adapters on frozen "
      f"MiniLM); 04's two-tower model, every weight fine-tuned on the same pairs: {two_tower:.3f}, "
      f"{two_tower - real_only[n_all]:+.3f} — what the frozen encoder leaves out of this curve")

# %% [markdown]
# **Does the filter earn its keep?** The row "SmolLM2 LoRA (04b), unfiltered" adds the same S pairs to the same N
# real ones, drawn from *every* query the LoRA writer produced (empty strings and exact repeats aside:
# `ecomrec.augment.filters.unfiltered`), so it differs from the filtered row only in *which* pairs it adds: the
# ones that passed the length check and the round trip, or any. It is trained where real data is scarce
# (N ≤ `FILTER_UP_TO`); Δ below is filtered − unfiltered, paired over the same seeds and real subsets.

# %%
FILTERED_ROW = "SmolLM2 LoRA (04b)"
if {FILTERED_ROW, UNFILTERED_ROW} <= set(sources):
    pair = {key: value for key, value in scores.items() if key[0] in (FILTERED_ROW, UNFILTERED_ROW)}
    versus = E.curve_table(pair, sources, curve_fits, seed=SEED, reference=UNFILTERED_ROW)
    versus = versus[(versus["row"] == FILTERED_ROW) & versus["Δ"].notna()].drop(columns=["row", "low", "high"])
    kept_share = len(pools[FILTERED_ROW]) / len(pools[UNFILTERED_ROW])
    reporting.record(f"curve/train/{reporting.metric_key(UNFILTERED_ROW)}/kept_share", kept_share)
    E.record_curve(versus, lambda r: [reporting.metric_key(f"SmolLM2 LoRA filtered vs unfiltered N={r['N']}")],
                   metrics=("ndcg@10_delta", "ndcg@10_delta_ci_low", "ndcg@10_delta_ci_high"))
    print(f"the filter kept {kept_share:.0%} of the writer's {len(pools[UNFILTERED_ROW]):,} distinct queries; filtered "
          "against unfiltered, the same S pairs added: " + "; ".join(
              f"N = {r['N']:,}: {r['Δ']:+.3f} [{r['Δ low']:+.3f}, {r['Δ high']:+.3f}] {verdict(r['Δ low'], r['Δ high'])}"
              for r in versus.to_dict("records")))
else:
    versus = pd.DataFrame()
    print(f"the filter's ablation needs both rows on the curve; left out: {sorted(curve_left_out)}")
versus.style.format({"NDCG@10": "{:.3f}", "N": "{:,}"} | {c: "{:+.3f}" for c in ("Δ", "Δ low", "Δ high", "Δ seed min", "Δ seed max")})

# %% [markdown]
# **Cold queries.** A test query is *cold* when none of its relevant products was judged for any train query: no
# real pair can have taught a model those products, only synthetic pairs written for them (where the uniform
# sample covers them). The points above, scored on the cold test queries only — the per-query scores are sliced,
# nothing is retrained; Δ against real only at the same N, paired over the same seeds:

# %%
cold = pd.Index(test_ids).isin(cold_queries(frames, "test"))
reporting.record("curve/test_cold/all/queries", int(cold.sum()))
print(f"{cold.sum():,} of {len(test_ids):,} test queries are cold")
if cold.any():
    cold_curve = E.curve_table({key: value[cold] for key, value in scores.items()}, sources, curve_fits, seed=SEED)
    E.record_curve(cold_curve, lambda r: [reporting.metric_key(f"{r['row']} N={r['N']}")], split="test_cold",
                   metrics=("ndcg@10", "ndcg@10_delta", "ndcg@10_delta_ci_low", "ndcg@10_delta_ci_high"))
    for name in sources:
        print(f"real + {name}, cold queries: {E.verdict_line(cold_curve, name)}")
    cold_view = cold_curve.assign(cell=[f"Δ {d:+.3f} [{lo:+.3f}, {hi:+.3f}]" if np.isfinite(d) else f"NDCG@10 {v:.3f}"
                                        for v, d, lo, hi in cold_curve[["NDCG@10", "Δ", "Δ low", "Δ high"]].to_numpy()])
    display(cold_view.pivot(index="N", columns="row", values="cell").fillna(""))

# %% [markdown]
# ## 3. Negatives: what a sampled softmax needs, at equal wall-clock time
#
# The exact training loss of a retriever is the softmax over the whole catalogue $D$,
# $\mathcal{L} = -\log \frac{e^{s\,q\cdot d_+}}{\sum_{j \in D} e^{s\,q\cdot d_j}}$, whose gradient with respect to
# $q$ is $s\,\big(\sum_{j \in D} p_j d_j - d_+\big)$ with $p_j$ the softmax probability of product $j$: every product
# is pushed away in proportion to how much the model already confuses it with the positive. A **sampled** softmax
# replaces $D$ by a few candidates — the batch's other positives (**in-batch negatives**), plus one explicit
# negative per pair. Most $p_j$ are tiny, so the gradient is dominated by the few confusable products: negatives
# that resemble them (hard negatives) approximate the full sum better than uniform ones, while negatives that are
# in fact relevant but unjudged (false negatives) teach the wrong thing.
#
# Rows, all with the trainer of section 2 (adapters on frozen MiniLM vectors, its learning rate) on the same real pairs — those for
# which `02` built a negative of every kind: **in-batch negatives only** (the reference); + one **uniform**,
# **popularity**, **BM25-hard**, **dense-hard** or **adversarial** (one attribute swapped) negative per pair from
# `02`; and the **full-catalogue softmax**, the exact limit the others approximate. A candidate set costs in
# proportion to its size, so the rows are compared at **equal wall-clock time**: each trains for at most
# `NEGATIVES_SECONDS` (selected on valid with section 2's patience; the table says what ended each run). Δ is the
# paired bootstrap difference in test NDCG@10 against the reference.

# %%
NEGATIVE_STRATEGIES = ("uniform", "popularity", "bm25-hard", "dense-hard", "adversarial")
NEGATIVES_SECONDS = {"smoke": 8.0}.get(PROFILE, 120.0)
title_row = pd.Series(np.arange(len(ids)), index=titles)
title_row = title_row[~title_row.index.duplicated()]
train_text_row = pd.Series(np.arange(len(train_ids)), index=query_text.loc[train_ids].to_numpy())
train_text_row = train_text_row[~train_text_row.index.duplicated()]
triplets = {}
for strategy in NEGATIVE_STRATEGIES:
    frame = load_from_disk(str(root / "augment" / "triplets" / strategy)).to_pandas()
    frame = frame[(frame["source"] == "real") & frame["anchor"].isin(train_text_row.index) & frame["positive"].isin(title_row.index)]
    triplets[strategy] = frame.drop_duplicates(["anchor", "positive"]).set_index(["anchor", "positive"])["negative"]
common = triplets[NEGATIVE_STRATEGIES[0]].index
for strategy in NEGATIVE_STRATEGIES[1:]:
    common = common.intersection(triplets[strategy].index)
anchors, positives = common.get_level_values(0), common.get_level_values(1)
pair_rows = (train_text_row[anchors].to_numpy(), title_row[positives].to_numpy())
hard = {}
for strategy in NEGATIVE_STRATEGIES:
    negative = triplets[strategy].loc[common]
    known = negative.isin(title_row.index).to_numpy()  # most negatives are catalogue products: their cached vectors
    vectors = np.empty((len(common), catalogue.shape[1]), dtype=np.float32)
    vectors[known] = catalogue[title_row[negative[known]].to_numpy()]
    if not known.all():  # adversarial titles are edited: encoded here
        vectors[~known] = encode(minilm, negative[~known].tolist())
    hard[strategy] = vectors
reporting.record("eval/train/negatives/pairs", len(common))
reporting.record("eval/train/negatives/seconds_per_row", NEGATIVES_SECONDS)
print(f"{len(common):,} real pairs with a negative of every kind; at most {NEGATIVES_SECONDS:.0f} s per row")

# %%
negative_rows = {"in-batch negatives only": {"negatives": 0},
                 **{f"+ {strategy} negatives": {"negatives": 0, "hard": hard[strategy]} for strategy in NEGATIVE_STRATEGIES},
                 "full-catalogue softmax": {"negatives": None}}
per_query, negative_fits = {}, {}
for name, options in negative_rows.items():
    fit = E.train_adapters(real_vectors, *pair_rows, catalogue, score_valid, learning_rate=CURVE_LR,
                           max_seconds=NEGATIVES_SECONDS, bf16=bf16, seed=SEED, **options)
    negative_fits[name] = fit
    per_query[name] = pd.Series(test_scorer(fit.queries(test_vectors), fit.catalogue(catalogue)), index=test_ids)
    print(f"{name}: {fit.history['step'].iloc[-1]:,} steps in {fit.seconds:.0f} s ({fit.stopped}), "
          f"valid {fit.best_valid:.4f}, test NDCG@10 {per_query[name].mean():.4f}")

# %%
reference = per_query["in-batch negatives only"]
ablation = []
for name, scores in per_query.items():
    fit = negative_fits[name]
    mean, low, high = bootstrap_ci(scores.to_numpy(), seed=SEED)
    row = {"row": name, "NDCG@10": mean, "low": low, "high": high, "steps": int(fit.history["step"].iloc[-1]),
           "passes": fit.history["pairs"].iloc[-1] / len(common), "ended by": fit.stopped}
    key = reporting.metric_key(name)
    for metric, value in (("ndcg@10", mean), ("ndcg@10_ci_low", low), ("ndcg@10_ci_high", high)):
        reporting.record(f"eval/test/{key}/{metric}", value)
    reporting.record(f"eval/train/{key}/steps", row["steps"])
    if name != "in-batch negatives only":
        d = paired_bootstrap(reference.to_numpy(), scores.to_numpy(), seed=SEED)
        row.update({"Δ": d["diff"], "Δ low": d["low"], "Δ high": d["high"], "verdict": verdict(d["low"], d["high"])})
        for metric, value in (("ndcg@10_delta", d["diff"]), ("ndcg@10_delta_ci_low", d["low"]), ("ndcg@10_delta_ci_high", d["high"])):
            reporting.record(f"eval/test/{key}/{metric}", value)
    ablation.append(row)
ablation = pd.DataFrame(ablation).set_index("row")
ablation.style.format({c: "{:.3f}" for c in ("NDCG@10", "low", "high")} | {c: "{:+.3f}" for c in ("Δ", "Δ low", "Δ high")}
                      | {"passes": "{:.1f}", "steps": "{:,}"}, na_rep="")

# %%
def delta_plot(table: pd.DataFrame, title: str, ax) -> None:
    """Paired differences against the reference with their 95 % intervals; grey when the interval holds 0."""
    table = table.dropna(subset=["Δ"])
    colours = ["tab:gray" if lo <= 0 <= hi else "tab:green" if lo > 0 else "tab:red"
               for lo, hi in zip(table["Δ low"], table["Δ high"])]
    ax.barh(table.index, table["Δ"], xerr=error_bars(table["Δ"], table["Δ low"], table["Δ high"]), color=colours)
    ax.axvline(0, color="black", lw=0.8)
    ax.set(title=title, xlabel="Δ NDCG@10 vs reference (95 % paired bootstrap)")


fig, axes = plt.subplots(1, 2, figsize=(13, 3.4))
delta_plot(ablation, f"Negatives (at most {NEGATIVES_SECONDS:.0f} s per row) vs in-batch only", axes[0])
for name, fit in negative_fits.items():
    axes[1].plot(fit.history["seconds"], fit.history["valid"], marker=".", label=name)
axes[1].set(xlabel="seconds", ylabel="valid NDCG@10", title="learning curves against wall-clock time")
axes[1].legend(fontsize=7)
plt.tight_layout()
plt.show()
for name, row in ablation.dropna(subset=["Δ"]).iterrows():
    print(f"{name}: {row['Δ']:+.3f} [{row['Δ low']:+.3f}, {row['Δ high']:+.3f}] against in-batch only — {row['verdict']}")

# %% [markdown]
# ### Pretraining and LoRA, from `04`'s recorded results
#
# `04` trained these rows at the same budget; its recorded means and 95 % intervals are read back here
# (unpaired: two intervals that overlap do not prove equality, and the paired Δ in `04` is the stronger test).

# %%
r04 = recorded["04_finetuning"]


def recorded_row(prefix: str, key: str, label: str, metric: str = "ndcg@10") -> dict:
    return {"row": label, metric: r04.get(f"{prefix}/{key}/{metric}", np.nan),
            "low": r04.get(f"{prefix}/{key}/{metric}_ci_low", np.nan), "high": r04.get(f"{prefix}/{key}/{metric}_ci_high", np.nan)}


from_04 = pd.DataFrame([
    recorded_row("search/test", "MiniLM_plus_MNRL", "pretraining: none (packaged MiniLM)"),
    recorded_row("search/test", "DAPT_MiniLM_plus_MNRL", "pretraining: domain MLM (03)"),
    recorded_row("search/test", "scratch_BERT_plus_MNRL", "pretraining: from scratch only (03)"),
    recorded_row("search/test", "MiniLM_plus_MNRL_LoRA", "LoRA (adapters only)"),
    recorded_row("search/test", "MiniLM_plus_MNRL", "full fine-tuning"),
]).set_index("row")
from_04.style.format("{:.3f}")

# %%
fig, ax = plt.subplots(figsize=(9, 2.8))
ax.barh(from_04.index, from_04["ndcg@10"], xerr=error_bars(from_04["ndcg@10"], from_04["low"], from_04["high"]),
        color=["tab:gray" if "none" in row or "full" in row else "tab:blue" for row in from_04.index])
ax.axvline(from_04.loc["pretraining: none (packaged MiniLM)", "ndcg@10"], color="black", lw=0.8, ls="--")
ax.set(title="Pretraining and LoRA (04, same step budget)", xlabel="test NDCG@10 (95 % bootstrap CI)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Recommendation ablations, from `05`'s recorded results

# %%
r05 = recorded["05_hybrid_recommendation"]
rec_rows = {"SASRec": "SASRec", "SASRec + sequence views (02)": "SASRec_plus_sequence_views",
            "content": "content", "content + synthetic queries (02)": "content_plus_synthetic_queries",
            "best single model → weighted fusion": "weighted_fusion", "→ reciprocal rank fusion": "reciprocal_rank_fusion",
            "→ learned fusion": "learned_fusion"}
rec_table = pd.DataFrame({label: {"NDCG@10": r05[f"rec/test/{key}/ndcg@10"], "low": r05[f"rec/test/{key}/ndcg@10_ci_low"],
                                  "high": r05[f"rec/test/{key}/ndcg@10_ci_high"]} for label, key in rec_rows.items()}).T
fig, ax = plt.subplots(figsize=(8, 3.4))
ax.barh(rec_table.index, rec_table["NDCG@10"], xerr=error_bars(rec_table["NDCG@10"], rec_table["low"], rec_table["high"]))
ax.invert_yaxis()
ax.set(xlabel="test NDCG@10 (95 % bootstrap)", title="Recommendation: augmentation and fusion")
plt.tight_layout()
plt.show()
for rule in ("each to its own convergence", "equal optimiser steps", "equal epochs"):  # 05's budget rules, over seeds
    key = f"rec/test_seeds/{reporting.metric_key(f'SASRec + views, {rule}')}_vs_SASRec/ndcg@10_delta"
    print(f"SASRec + sequence views vs SASRec, {rule}, {profile.rec_seeds} seeds: {r05[key]:+.4f} "
          f"[{r05[f'{key}_low']:+.4f}, {r05[f'{key}_high']:+.4f}] — {verdict(r05[f'{key}_low'], r05[f'{key}_high'])}")
rec_table.style.format("{:.3f}")

# %% [markdown]
# ## 5. From an offline lift to an online experiment
#
# Offline, the fine-tuned bi-encoder of `04` and BM25 differ by some NDCG@10 on test queries (the cell
# below prints by how much, and in which direction). Would an A/B test see that difference? Treating per-query NDCG@10 as the per-user metric, a two-sided test at level α with
# power 1 − β needs $n = 2\sigma^2 (z_{1-\alpha/2} + z_{1-\beta})^2 / \delta^2$ users per arm, with σ the
# per-query standard deviation and δ the lift. Real online metrics (clicks, purchases) are noisier and
# move less than NDCG, so this is a lower bound.
#
# **Interleaving** shows each user one list merged from both systems (team draft) and credits clicks to
# the system that contributed the clicked product. We simulate users on the test queries: they scan the
# merged top 10 and click a product with probability gain/2 (grade 3 → 1, grade 2 → ½, unjudged or
# irrelevant → 0), leaving after a click with probability ½.

# %%
finetune = root / "finetune"
encoder = sentence_encoder(finetune / "biencoder_best")
dense = DenseIndex(ids, np.load(finetune / "biencoder_best_catalogue.npy"))
found, scores = dense.search(encode(encoder, query_text.loc[test_ids].tolist()), k=100)
dense_run = R.run_frame(test_ids, found, scores)
ndcg_bm25 = R.evaluate_run(qrels, bm25_run)["ndcg@10"]
ndcg_dense = R.evaluate_run(qrels, dense_run)["ndcg@10"].loc[ndcg_bm25.index]
lift = float(ndcg_dense.mean() - ndcg_bm25.mean())
sd = float(np.sqrt((ndcg_dense.var() + ndcg_bm25.var()) / 2))
users_per_arm = O.ab_sample_size(lift, sd, ALPHA, POWER)
reporting.record("eval/test/online/offline_lift_ndcg@10", lift)
reporting.record("eval/test/online/per_query_sd", sd)
reporting.record("eval/test/online/ab_users_per_arm", users_per_arm)
print(f"offline lift (bi-encoder − BM25): {lift:+.3f} NDCG@10, per-query σ {sd:.3f} → an A/B test needs about "
      f"{users_per_arm:,} users per arm (α = {ALPHA}, power {POWER:.0%})")

# %%
def top_lists(run: pd.DataFrame, k: int = 10) -> dict:
    ordered = run.sort_values([C.COL_QUERY_ID, "score"], ascending=[True, False], kind="mergesort")
    return ordered.groupby(C.COL_QUERY_ID)[C.COL_PRODUCT_ID].agg(lambda s: list(s)[:k]).to_dict()


gains = {q: dict(zip(f[C.COL_PRODUCT_ID], f["gain"])) for q, f in qrels.groupby(C.COL_QUERY_ID)}
lists_bm25, lists_dense = top_lists(bm25_run), top_lists(dense_run)
outcomes = O.simulate_interleaving(lists_bm25, lists_dense, gains, k=10, seed=SEED)
preference = O.interleaving_preference(outcomes)
sizes = [s for s in (25, 50, 100, 200, 400, 800, 1600) if s <= 4 * len(test_ids)]
power_curve = O.impressions_to_detect(lists_bm25, lists_dense, gains, sizes, trials=40, alpha=ALPHA, seed=SEED)
enough = power_curve[power_curve["power"] >= POWER]
impressions_needed = int(enough["impressions"].min()) if len(enough) else None
reporting.record("eval/test/online/interleaving_preference_for_dense", preference)
reporting.record("eval/test/online/interleaving_decided_share", float((outcomes["winner"] != "tie").mean()))
reporting.record("eval/test/online/interleaving_largest_simulation", sizes[-1])
if impressions_needed is not None:
    reporting.record("eval/test/online/interleaving_impressions_for_power", impressions_needed)
print(f"interleaving: the bi-encoder wins {0.5 + preference:.1%} of the decided impressions "
      f"({(outcomes['winner'] != 'tie').mean():.0%} of impressions decided); impressions for {POWER:.0%} power: "
      f"{impressions_needed if impressions_needed else f'more than {sizes[-1]}'} (A/B: {users_per_arm:,} per arm)")
fig, ax = plt.subplots(figsize=(6.5, 3.4))
ax.plot(power_curve["impressions"], power_curve["power"], "o-")
ax.axhline(POWER, color="gray", ls="--")
ax.set(xscale="log", xlabel="impressions (simulated users)", ylabel="power", title="Team-draft interleaving: bi-encoder vs BM25")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. The summary
#
# `reports/<profile>/summary.md` collects the final tables. `ecomrec.summary` writes it from the recorded
# metrics of every chapter alone (so the published reference and your run are summarised the same way), names
# each system as its chapter does, and reads every paired 95 % interval with the same rule: "helped" or "hurt"
# only when it excludes zero.

# %%
summary = write_text_atomic(Path(REPORT_DIR) / PROFILE / "summary.md",
                            summary_markdown(reporting.load_metrics(f"{REPORT_DIR}/{PROFILE}/metrics"), PROFILE,
                                             reporting.load_names(f"{REPORT_DIR}/{PROFILE}/metrics")))
print(summary.read_text())

# %% [markdown]
# ## 7. Cost

# %%
finish("eval", notebook_start)

# %% [markdown]
# ## Exercises
# 1. The curve's SmolLM2 LoRA and from-scratch rows are upper bounds below N = all (their writers saw every
#    training query). Train the LoRA writer (`04b`, `llm.train_query_lora`) on the pairs of the N = 1,000 subset
#    only, write queries for the covered products and add it as a row. Does it stay above real only at N = 1,000,
#    and how far does it fall below the upper bound?
# 2. Re-run the negatives ablation with twice the steps. Which verdicts change? What does that say about budgets?
# 3. Change the click model so users click irrelevant products with probability 0.05. How many more
#    impressions does interleaving need?
# 4. Compute the A/B sample size for Recall@100 instead of NDCG@10. Which metric is cheaper to test, and why?

# %% [markdown]
# ## Recorded results

# %%
pd.Series(reporting.load_metrics(f"{REPORT_DIR}/{PROFILE}/metrics")["06_evaluation"], name="value", dtype=object).to_frame()
