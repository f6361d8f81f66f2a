# %% [markdown]
# # 06 · Evaluation: one protocol, ablations with intervals, and the step to an online test
#
# Chapters `04`–`05` each reported a table. This chapter asks the questions a reader should ask of
# them: are the metrics computed correctly, which ingredient of augmentation made a difference, and how
# would we confirm an offline lift online? It ends by writing `summary.md`, the report's one-page answer.
#
# **Learning objectives.** After this chapter you can
# 1. check ranking metrics against an independent implementation (ranx), graded and binary;
# 2. run an ablation — one ingredient changed at a time, everything else equal — and read paired
#    bootstrap intervals;
# 3. size an A/B test from an offline lift (power analysis) and simulate team-draft interleaving;
# 4. state only what the numbers support, including where augmentation did not help.

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

# %%
from ecomrec.notebook import quiet_libraries

quiet_libraries()  # first, before the libraries load: no loading bars or widget warnings on the page

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from datasets import Dataset, load_from_disk

from ecomrec import config as C
from ecomrec import online as O
from ecomrec import reporting
from ecomrec.notebook import begin, finish
from ecomrec.data.pairs import RELEVANT, judged_pairs
from ecomrec.metrics import bootstrap_ci, compare_with_ranx, paired_bootstrap
from ecomrec.models import retrieval as R
from ecomrec.models.embedding_cache import EmbeddingCache
from ecomrec.models.encoders import load_minilm, sentence_encoder
from ecomrec.models.search import BM25Index, DenseIndex, encode
from ecomrec.storage import write_text_atomic
from ecomrec.summary import summary_markdown

profile, device, root, out_dir, frames, notebook_start = begin(
    "06_evaluation", PROFILE, SEED, DEVICE, ARTIFACT_DIR, REPORT_DIR, "evaluation",
    needs=("04_finetuning", "04b_llm_synthesis", "05_hybrid_recommendation", "07_deployment"),
    deterministic=DETERMINISTIC)
recorded = reporting.load_metrics(f"{REPORT_DIR}/{PROFILE}/metrics")

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
bm25_run = R.run_frame(test_ids, *BM25Index(ids, titles).search_matched(query_text.loc[test_ids].tolist(), k=100))
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
# ## 2. Search ablations: one ingredient at a time
#
# Every row below fine-tunes the packaged MiniLM with MNRL for the same number of steps and batch size as
# `04` (`profile.biencoder_steps` × 32), on the full catalogue protocol of `04` (test split, NDCG@10 with
# graded gains), and differs from the **reference** row — real (query, title) pairs, in-batch negatives
# only — in exactly one ingredient:
#
# | axis | rows |
# |---|---|
# | augmentation | real pairs + S synthetic pairs from: attribute **templates**; the from-scratch **generator** (T5 sampling, unfiltered); the **generator + filter** (only queries that passed `02`'s round-trip filter). S is the same in all three rows; a source with fewer pairs than one batch is left out (and said so) rather than shrinking S for every row. |
# | negatives | one explicit negative per real pair from `02`: **uniform**, **popularity**, **BM25-hard**, **dense-hard**, **adversarial** (one attribute swapped) |
#
# Δ is the paired bootstrap difference in NDCG@10 against the reference, on the same test queries.
# The reference is trained again here (same seed and budget as `04`'s "MiniLM + MNRL" row), which also
# shows how reproducible that number is. A row whose trained weights come out identical to a model `04`
# already encoded (the reference, and the dense-hard row on a CPU) reads its catalogue embeddings from the
# embedding cache instead of encoding the catalogue again; the cache key is the weights themselves, so a
# model that differs by one bit is encoded afresh.

# %%
train_pairs = judged_pairs(frames, "train", RELEVANT)
real = {"anchor": train_pairs[C.COL_QUERY].tolist(), "positive": train_pairs[C.COL_TITLE].tolist()}
synthetic = pd.read_parquet(root / "augment" / "synthetic_queries_homedepot.parquet")
sources = {"templates": synthetic[synthetic["generator"] == "templates"],
           "generator": synthetic[synthetic["generator"] == "scratch-sample"],
           "generator + filter": synthetic[(synthetic["generator"] == "scratch-sample") & synthetic["keep"]]}
# a pool under one batch would add less than one step of data to each row, and setting S to its size would
# turn every augmentation row into a copy of the reference: leave that source out, say so, keep S for the rest
augmentation_left_out = {name: len(source) for name, source in sources.items() if len(source) < BATCH_SIZE}
for name, source in sources.items():
    reporting.record(f"eval/train/{reporting.metric_key('+ ' + name)}/pool_pairs", len(source))
for name, size in augmentation_left_out.items():
    print(f"LEFT OUT: + {name} — its pool has {size:,} pairs, fewer than one batch of {BATCH_SIZE}")
sources = {name: source for name, source in sources.items() if name not in augmentation_left_out}
reporting.record("eval/train/augmentation/rows_left_out", len(augmentation_left_out))
reporting.record("eval/train/augmentation/batch_size", BATCH_SIZE)
S = min(len(train_pairs), *(len(f) for f in sources.values())) if sources else 0
rows = {"reference (real pairs)": Dataset.from_dict(real)}
for name, source in sources.items():
    sample = source.sample(S, random_state=SEED)
    rows[f"+ {name}"] = Dataset.from_dict({"anchor": real["anchor"] + sample[C.COL_QUERY].tolist(),
                                           "positive": real["positive"] + sample[C.COL_TITLE].tolist()}).shuffle(seed=SEED)
for strategy in ("uniform", "popularity", "bm25-hard", "dense-hard", "adversarial"):
    triplets = load_from_disk(str(root / "augment" / "triplets" / strategy))
    rows[f"+ {strategy} negatives"] = (triplets.filter(lambda r: r["source"] == "real")
                                       .select_columns(["anchor", "positive", "negative"]))
reporting.record("eval/train/augmentation/synthetic_pairs_per_row", S)
print(f"{len(train_pairs):,} real pairs; S = {S:,} synthetic pairs per augmentation row; "
      f"{profile.biencoder_steps} steps of {BATCH_SIZE} per row; rows: {list(rows)}")

# %%
per_query, fits = {}, {}
embedding_cache = EmbeddingCache(root / "embeddings")  # 04's catalogue passes, keyed by model weights and titles
for name, data in rows.items():
    model = load_minilm(device)
    fits[name] = R.train_biencoder(model, data, out_dir / "checkpoints", max_steps=profile.biencoder_steps,
                                   batch_size=BATCH_SIZE, learning_rate=5e-5, seed=SEED, device=device,
                                   logging_steps=max(1, profile.biencoder_steps // 10))
    catalogue = embedding_cache.onnx(model, titles, out_dir / "onnx" / reporting.metric_key(name))
    found, scores = DenseIndex(ids, catalogue).search(encode(model, query_text.loc[test_ids].tolist()), k=100)
    per_query[name] = R.evaluate_run(qrels, R.run_frame(test_ids, found, scores))
    print(f"{name}: {fits[name].seconds:.0f} s training, test NDCG@10 {per_query[name]['ndcg@10'].mean():.3f}")
reporting.record("eval/all/embedding_cache/hits", embedding_cache.hits)
print(f"catalogue passes: {embedding_cache.misses} encoded here, {embedding_cache.hits} read from the embedding cache "
      "(a row whose trained weights equal a model 04 already encoded)")

# %%
reference = per_query["reference (real pairs)"]["ndcg@10"]
ablation = []
for name, scores in per_query.items():
    mean, low, high = bootstrap_ci(scores["ndcg@10"].to_numpy(), seed=SEED)
    row = {"axis": "reference" if name.startswith("reference") else "negatives" if "negatives" in name else "augmentation",
           "row": name, "NDCG@10": mean, "low": low, "high": high, "Recall@100": scores["recall@100"].mean()}
    key = reporting.metric_key(name)
    reporting.record(f"eval/test/{key}/ndcg@10", mean)
    reporting.record(f"eval/test/{key}/ndcg@10_ci_low", low)
    reporting.record(f"eval/test/{key}/ndcg@10_ci_high", high)
    if not name.startswith("reference"):
        d = paired_bootstrap(reference.to_numpy(), scores["ndcg@10"].loc[reference.index].to_numpy(), seed=SEED)
        row.update({"Δ": d["diff"], "Δ low": d["low"], "Δ high": d["high"], "p": d["p_value"]})
        reporting.record(f"eval/test/{key}/ndcg@10_delta", d["diff"])
        reporting.record(f"eval/test/{key}/ndcg@10_delta_ci_low", d["low"])
        reporting.record(f"eval/test/{key}/ndcg@10_delta_ci_high", d["high"])
    ablation.append(row)
ablation = pd.DataFrame(ablation).set_index("row")
reproduced = recorded["04_finetuning"].get("search/test/MiniLM_plus_MNRL/ndcg@10")
print(f"reference row: {reference.mean():.4f} here, {reproduced:.4f} in 04 (same seed, steps and data)")
reporting.record("eval/test/reference_minus_04/ndcg@10", reference.mean() - reproduced)
ablation.style.format({c: "{:.3f}" for c in ("NDCG@10", "low", "high", "Recall@100")} | {c: "{:+.3f}" for c in ("Δ", "Δ low", "Δ high")} | {"p": "{:.3f}"}, na_rep="")

# %%
def delta_plot(table: pd.DataFrame, title: str, ax) -> None:
    """Paired differences against the reference with their 95 % intervals; grey when the interval holds 0."""
    table = table.dropna(subset=["Δ"])
    colours = ["tab:gray" if lo <= 0 <= hi else "tab:green" if lo > 0 else "tab:red"
               for lo, hi in zip(table["Δ low"], table["Δ high"])]
    ax.barh(table.index, table["Δ"], xerr=[table["Δ"] - table["Δ low"], table["Δ high"] - table["Δ"]], color=colours)
    ax.axvline(0, color="black", lw=0.8)
    ax.set(title=title, xlabel="Δ NDCG@10 vs reference (95 % paired bootstrap)")


fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
delta_plot(ablation[ablation["axis"] == "augmentation"], "Augmentation", axes[0])
delta_plot(ablation[ablation["axis"] == "negatives"], "Negatives", axes[1])
plt.tight_layout()
plt.show()

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
ax.barh(from_04.index, from_04["ndcg@10"], xerr=[from_04["ndcg@10"] - from_04["low"], from_04["high"] - from_04["ndcg@10"]],
        color=["tab:gray" if "none" in row or "full" in row else "tab:blue" for row in from_04.index])
ax.axvline(from_04.loc["pretraining: none (packaged MiniLM)", "ndcg@10"], color="black", lw=0.8, ls="--")
ax.set(title="Pretraining and LoRA (04, same step budget)", xlabel="test NDCG@10 (95 % bootstrap CI)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Training data written by a pretrained LLM, from `04b`'s recorded results
#
# `04b` trained `04`'s bi-encoder on the same number of pairs and steps from each source — real train
# pairs, `02`'s templates, `02`'s from-scratch model, SmolLM2-LoRA queries, half real and half SmolLM2 —
# and compared each with the real-only row by a paired bootstrap over the same test queries.

# %%
r04b = recorded["04b_llm_synthesis"]
llm_rows = {"real pairs only": "real", "templates (02)": "templates_filtered", "from-scratch model (02)": "scratch_model_filtered",
            "SmolLM2 LoRA": "SmolLM2_LoRA_filtered", "real + SmolLM2": "real_plus_SmolLM2"}
llm_left_out = {label: int(r04b[f"llm/train/{key}/pool_pairs"]) for label, key in llm_rows.items()
                if f"llm/test/{key}/ndcg@10" not in r04b}  # 04b leaves out a row whose pool is under one batch
llm_rows = {label: key for label, key in llm_rows.items() if label not in llm_left_out}
for label, size in llm_left_out.items():
    print(f"{label}: left out by 04b, its filtered pool had {size:,} pairs (under one batch)")
llm_table = pd.DataFrame({label: {"NDCG@10": r04b[f"llm/test/{key}/ndcg@10"], "low": r04b[f"llm/test/{key}/ndcg@10_ci_low"],
                                  "high": r04b[f"llm/test/{key}/ndcg@10_ci_high"],
                                  "Δ": r04b.get(f"llm/test/{key}/ndcg@10_delta_diff", np.nan),
                                  "Δ low": r04b.get(f"llm/test/{key}/ndcg@10_delta_low", np.nan),
                                  "Δ high": r04b.get(f"llm/test/{key}/ndcg@10_delta_high", np.nan)}
                          for label, key in llm_rows.items()}).T
fig, ax = plt.subplots(figsize=(8, 3.0))
ax.errorbar(llm_table["NDCG@10"], range(len(llm_table)), xerr=[llm_table["NDCG@10"] - llm_table["low"],
                                                             llm_table["high"] - llm_table["NDCG@10"]], fmt="o", capsize=4)
ax.set_yticks(range(len(llm_table)), llm_table.index)
ax.invert_yaxis()
ax.axvline(llm_table.loc["real pairs only", "NDCG@10"], color="grey", ls="--", lw=1)
ax.set(xlabel="test NDCG@10 (95 % bootstrap CI)",
       title=f"Equal budget ({int(r04b['llm/train/equal_budget/pairs_per_row']):,} pairs per row, 04b)")
plt.tight_layout()
plt.show()
llm_table.style.format("{:.3f}")

# %% [markdown]
# ## 3. Recommendation ablations, from `05`'s recorded results

# %%
r05 = recorded["05_hybrid_recommendation"]
rec_rows = {"SASRec": "SASRec", "SASRec + sequence views (02)": "SASRec_plus_sequence_views",
            "content": "content", "content + synthetic queries (02)": "content_plus_synthetic_queries",
            "best single model → weighted fusion": "weighted_fusion", "→ reciprocal rank fusion": "reciprocal_rank_fusion",
            "→ learned fusion": "learned_fusion"}
rec_table = pd.DataFrame({label: {"NDCG@10": r05[f"rec/test/{key}/ndcg@10"], "low": r05[f"rec/test/{key}/ndcg@10_ci_low"],
                                  "high": r05[f"rec/test/{key}/ndcg@10_ci_high"]} for label, key in rec_rows.items()}).T
fig, ax = plt.subplots(figsize=(8, 3.4))
ax.barh(rec_table.index, rec_table["NDCG@10"], xerr=[rec_table["NDCG@10"] - rec_table["low"], rec_table["high"] - rec_table["NDCG@10"]])
ax.invert_yaxis()
ax.set(xlabel="test NDCG@10 (95 % bootstrap)", title="Recommendation: augmentation and fusion")
plt.tight_layout()
plt.show()
rec_table.style.format("{:.3f}")

# %% [markdown]
# ## 4. From an offline lift to an online experiment
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
# ## 5. The summary
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
# ## 6. Cost

# %%
finish("eval", notebook_start)

# %% [markdown]
# ## Exercises
# 1. Re-run the ablation with twice the steps. Which verdicts change? What does that say about budgets?
# 2. Change the click model so users click irrelevant products with probability 0.05. How many more
#    impressions does interleaving need?
# 3. Compute the A/B sample size for Recall@100 instead of NDCG@10. Which metric is cheaper to test, and why?

# %% [markdown]
# ## Recorded results

# %%
pd.Series(reporting.load_metrics(f"{REPORT_DIR}/{PROFILE}/metrics")["06_evaluation"], name="value", dtype=object).to_frame()
