# %% [markdown]
# # 05 · Hybrid recommendation and hybrid search
#
# Collaborative filtering learns from who bought what; content models from what items *are*; sequential
# models from the order of events. Each sees something the others miss, which is the case for
# **hybrids**. This chapter builds one of each on the Amazon Office 5-core data, fuses them three ways,
# and asks whether `02`'s augmentations (sequence views, synthetic queries as item text) help. The last
# section does the same for search: BM25 + the fine-tuned bi-encoder of `04`, fused, then re-ranked.
#
# **Learning objectives.** After this chapter you can
# 1. evaluate recommenders by leave-one-out with a full ranking and the history removed;
# 2. implement popularity, ItemKNN, matrix factorisation (ALS, BPR), SASRec and a content model behind
#    one interface, and explain each with its formula;
# 3. fuse models by normalised scores, by reciprocal ranks, and with a learned ranker;
# 4. read results by slice (cold items, short histories, categories) and beyond accuracy (coverage,
#    novelty, diversity).

# %% tags=["parameters"]
PROFILE = "smoke"
SEED = 42
DATA_DIR = ""
ARTIFACT_DIR = "artifacts"
REPORT_DIR = "reports"
DEVICE = "auto"
DETERMINISTIC = False  # on CUDA: deterministic kernels, slower (make report DETERMINISTIC=1)
K = 10
CANDIDATE_DEPTH = 50
COLD_MAX_INTERACTIONS = 5
SHORT_HISTORY = 5

# %%
from ecomrec.notebook import quiet_libraries

quiet_libraries()  # first, before the libraries load: no loading bars or widget warnings on the page

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec import reporting
from ecomrec.notebook import begin, finish
from ecomrec.data.pairs import office_content_text
from ecomrec.metrics import (bootstrap_ci, catalog_coverage, intra_list_diversity, novelty, paired_bootstrap, popularity_bias,
                             verdict)
from ecomrec.models.encoders import load_minilm
from ecomrec.models.search import encode
from ecomrec.recommend import models as M
from ecomrec.recommend.evaluate import rank_metrics, ranks_from_lists, target_ranks
from ecomrec.recommend.fusion import LearnedFusion, candidate_features
from ecomrec.recommend.sasrec import SASRec

profile, device, root, _, frames, notebook_start = begin(
    "05_hybrid_recommendation", PROFILE, SEED, DEVICE, ARTIFACT_DIR, REPORT_DIR,
    needs=("02_augmentation", "04_finetuning"), deterministic=DETERMINISTIC)
pd.set_option("display.max_colwidth", 70)

# %% [markdown]
# ## 1. Protocol
#
# Leave-one-out (`01`): each user's last event is the **test** target, the second-last the **valid**
# target, the rest is training history. Every model is fitted on the training events only and ranks
# **all** items; the user's training items are removed from the ranking, and for test the validation
# item is removed as well (no model sees it: the same one-event gap for every model). With a single
# target at rank $r$: HR@10 = Recall@10 $= [r \le 10]$, NDCG@10 $= [r \le 10]/\log_2(r+1)$, MRR $= 1/r$,
# Recall@20 $= [r \le 20]$. Ties are counted against the target.

# %%
items = frames["office/items"].reset_index(drop=True)
item_ids = items[C.COL_ITEM].to_numpy()
train = frames["office/loo_train"]
targets = {split: frames[f"office/loo_{split}"].set_index(C.COL_USER)[C.COL_ITEM].to_dict() for split in ("valid", "test")}
users = sorted(targets["test"])
exclude = {"valid": None, "test": {u: [i] for u, i in targets["valid"].items()}}
train_counts = train[C.COL_ITEM].value_counts().reindex(item_ids, fill_value=0)
reporting.record("rec/train/protocol/events", len(train))
reporting.record("rec/test/protocol/users", len(users))
reporting.record("rec/all/protocol/items", len(item_ids))
print(f"{len(users):,} users, {len(item_ids):,} items, {len(train):,} training events")

# %% [markdown]
# ## 2. The models
#
# * **Popularity** — $s(u, i) = |U_i|$, the number of training users of item $i$: the same list for everyone.
# * **ItemKNN** — shrunk cosine between items' user sets, $\mathrm{sim}(i,j) = \frac{|U_i \cap U_j|}{\sqrt{|U_i|}\sqrt{|U_j|} + \lambda}$
#   ($\lambda = 10$, 100 neighbours per item), and $s(u, j) = \sum_{i \in H(u)} \mathrm{sim}(i, j)$.
#   *A correction:* descriptions of item-based CF sometimes normalise by the sum of **all** similarities of
#   $j$ or weight by ratings the data do not have; with implicit feedback and a per-user ranking, the plain
#   sum over the user's history $H(u)$ is the standard form (a per-user normaliser would not change the order).
# * **ALS** (implicit) — minimises $\sum_{u,i} c_{ui}(p_{ui} - x_u^\top y_i)^2 + \lambda(\|x_u\|^2 + \|y_i\|^2)$ with
#   $p_{ui} = [u \text{ met } i]$ and confidence $c_{ui} = 1 + \alpha p_{ui}$, alternating closed-form solves.
# * **BPR** (implicit) — maximises $\sum \log \sigma(x_u^\top y_i - x_u^\top y_j)$ over (user, seen $i$, unseen $j$) triples.
# * **SASRec** — a causal self-attention encoder over the user's item sequence; the last hidden state
#   $h$ scores item $i$ by $h^\top e_i$ (shared item embeddings), trained with a softmax over all items. With
#   `02`'s sequence views (crop, mask, reorder) added as extra training sequences, or without.
# * **Content** — MiniLM embeddings of title, brand, category path and description;
#   a user's profile is $\sum_t \gamma^{n-1-t} e_{i_t}$ normalised ($\gamma = 0.8$: recent items weigh more), $s(u,i) = \cos$.
#   Optionally `02`'s filtered synthetic queries for the item are appended to its text.

# %%
def item_text(with_queries: bool) -> list[str]:
    text = office_content_text(items)  # title. brand. category path. first 60 description words
    if with_queries:
        synthetic = pd.read_parquet(root / "augment" / "synthetic_queries_office.parquet")
        queries = synthetic[synthetic["keep"]].groupby(C.COL_PRODUCT_ID)[C.COL_QUERY].agg("; ".join)
        text = text + ". Searches: " + items[C.COL_ITEM].map(queries).fillna("")
    return text.tolist()


encoder = load_minilm(device)
item_embeddings = {flag: encode(encoder, item_text(flag), batch_size=64) for flag in (False, True)}
views = pd.read_parquet(root / "augment" / "sequence_views.parquet")
augmented_views = views.loc[views["method"] != "none", "items"].map(list).tolist()
models = {
    "popularity": M.Popularity(item_ids),
    "ItemKNN": M.ItemKNN(item_ids, shrinkage=10.0, neighbours=100),
    "ALS": M.ImplicitMF(item_ids, "als", factors=64, iterations=30, regularization=0.05, alpha=20.0, seed=SEED),
    "BPR": M.ImplicitMF(item_ids, "bpr", factors=64, iterations=100, learning_rate=0.05, regularization=0.01, seed=SEED),
    "SASRec": SASRec(item_ids, epochs=profile.sasrec_epochs, seed=SEED, device=device),
    "SASRec + sequence views": SASRec(item_ids, epochs=profile.sasrec_epochs, seed=SEED, device=device),
    "content": M.ContentBased(item_ids, item_embeddings[False]),
    "content + synthetic queries": M.ContentBased(item_ids, item_embeddings[True]),
}
fit_seconds = {}
for name, model in models.items():
    start = time.perf_counter()
    if name == "SASRec + sequence views":
        model.fit(train, extra_sequences=augmented_views, progress=True)
    else:
        model.fit(train) if not isinstance(model, SASRec) else model.fit(train, progress=True)
    fit_seconds[name] = time.perf_counter() - start
for name in ("SASRec", "SASRec + sequence views"):
    reporting.record(f"rec/train/{name.replace(' ', '_').replace('+', 'plus')}/epoch_seconds", models[name].epoch_seconds)
    reporting.record(f"rec/train/{name.replace(' ', '_').replace('+', 'plus')}/loss_first", float(models[name].history["loss"].iloc[0]))
    reporting.record(f"rec/train/{name.replace(' ', '_').replace('+', 'plus')}/loss_last", float(models[name].history["loss"].iloc[-1]))
print({n: f"{s:.1f} s" for n, s in fit_seconds.items()})
print(f"SASRec: {models['SASRec'].epoch_seconds:.1f} s/epoch on {len(users):,} sequences; with views "
      f"{models['SASRec + sequence views'].epoch_seconds:.1f} s/epoch on {len(users) + len(augmented_views):,}")

# %%
fig, ax = plt.subplots(figsize=(7, 3.2))
for name in ("SASRec", "SASRec + sequence views"):
    ax.plot(models[name].history["epoch"], models[name].history["loss"], marker="o", label=name)
ax.set(title="SASRec training loss (softmax over all items)", xlabel="epoch", ylabel="cross-entropy")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Hybrids
#
# * **Weighted fusion** — $s(u,i) = \sum_m w_m\,\tilde s_m(u,i)$ with each model's scores min-max scaled per user
#   over the items not yet seen; the weights are chosen on **valid** from a small grid over the three
#   best single models.
# * **Reciprocal rank fusion** — $s(u,i) = \sum_m \frac{1}{60 + r_m(u,i)}$ over all single models: no scores, no tuning.
# * **Learned fusion** — candidates = the union of every model's top 50; features = every model's score
#   and rank, item popularity, history length; gradient-boosted trees learn p(candidate is the held-out
#   item) from the **valid** targets and rank the test candidates (a target outside the candidates counts
#   as a miss).

# %%
ranks = {"valid": {}, "test": {}}
for split in ("valid", "test"):
    for name, model in models.items():
        ranks[split][name] = target_ranks(model, users, targets[split], exclude[split])
singles = list(models)
valid_ndcg = {n: rank_metrics(ranks["valid"][n])[f"ndcg@{K}"].mean() for n in singles}
top3 = sorted(singles, key=valid_ndcg.get, reverse=True)[:3]
grid = [w for w in np.array(np.meshgrid(*[[0.0, 0.25, 0.5, 1.0]] * 3)).T.reshape(-1, 3) if w.sum() > 0]
best_w, best_score = None, -1.0
for w in grid:
    fused = M.WeightedFusion([models[n] for n in top3], w).fit(train)
    score = rank_metrics(target_ranks(fused, users, targets["valid"]))[f"ndcg@{K}"].mean()
    if score > best_score + 1e-12:
        best_w, best_score = w, score
hybrids = {"weighted fusion": M.WeightedFusion([models[n] for n in top3], best_w).fit(train),
           "reciprocal rank fusion": M.RRFusion([models[n] for n in singles]).fit(train)}
for name, model in hybrids.items():
    for split in ("valid", "test"):
        ranks[split][name] = target_ranks(model, users, targets[split], exclude[split])
print("weighted fusion over", dict(zip(top3, best_w)), f"(valid NDCG@{K} {best_score:.4f})")
start = time.perf_counter()
features = {split: candidate_features(models, users, depth=CANDIDATE_DEPTH, exclude=exclude[split]) for split in ("valid", "test")}
ranker = LearnedFusion(seed=SEED).fit(features["valid"], targets["valid"])
learned_lists = ranker.recommend(features["test"], k=CANDIDATE_DEPTH)
ranks["test"]["learned fusion"] = ranks_from_lists(learned_lists, {u: targets["test"][u] for u in users})
recall_of_candidates = np.mean([targets["test"][u] in set(g) for u, g in features["test"].groupby(C.COL_USER)[C.COL_ITEM]])
reporting.record("rec/test/learned_fusion/candidate_recall", float(recall_of_candidates))
print(f"learned fusion: {len(features['valid']):,} valid candidates ({ranker.positives:,} targets among them), "
      f"trained in {time.perf_counter() - start:.0f} s; test targets among candidates: {recall_of_candidates:.1%}")

# %% [markdown]
# ## 4. Results on test

# %%
rows, per_user = [], {}
for name, r in ranks["test"].items():
    metrics = rank_metrics(r, k=K)
    per_user[name] = metrics
    row = {"model": name}
    for metric in metrics.columns:
        mean, low, high = bootstrap_ci(metrics[metric].to_numpy(), seed=SEED)
        row[metric], row[f"{metric} CI"] = mean, f"[{low:.3f}, {high:.3f}]"
        reporting.record(f"rec/test/{reporting.metric_key(name)}/{metric}", mean)
        reporting.record(f"rec/test/{reporting.metric_key(name)}/{metric}_ci_low", low)
        reporting.record(f"rec/test/{reporting.metric_key(name)}/{metric}_ci_high", high)
    rows.append(row)
results = pd.DataFrame(rows).set_index("model").sort_values(f"ndcg@{K}", ascending=False)
results.style.format({c: "{:.4f}" for c in results.columns if "CI" not in c})

# %%
fig, ax = plt.subplots(figsize=(9, 0.42 * len(results) + 1))
ci = results[f"ndcg@{K} CI"].str.strip("[]").str.split(", ", expand=True).astype(float)
err = np.vstack([results[f"ndcg@{K}"] - ci[0], ci[1] - results[f"ndcg@{K}"]])
colours = ["tab:orange" if n in ("weighted fusion", "reciprocal rank fusion", "learned fusion") else "tab:blue" for n in results.index]
ax.barh(results.index[::-1], results[f"ndcg@{K}"][::-1], xerr=err[:, ::-1], color=colours[::-1])
ax.set(xlabel=f"test NDCG@{K} (95 % bootstrap CI)", title=f"Leave-one-out, {len(users):,} users, full ranking of {len(item_ids):,} items")
plt.tight_layout()
plt.show()

# %%
learned = per_user["learned fusion"][f"ndcg@{K}"]
lines = []
for name in singles:
    d = paired_bootstrap(per_user[name][f"ndcg@{K}"].loc[learned.index].to_numpy(), learned.to_numpy(), seed=SEED)
    reporting.record(f"rec/test/learned_fusion_vs_{reporting.metric_key(name)}/ndcg@{K}_delta", d["diff"])
    reporting.record(f"rec/test/learned_fusion_vs_{reporting.metric_key(name)}/ndcg@{K}_delta_ci_low", d["low"])
    lines.append({"single model": name, "Δ NDCG@10 (learned − single)": d["diff"], "95% CI": f"[{d['low']:+.4f}, {d['high']:+.4f}]",
                  "interval excludes 0": d["low"] > 0 or d["high"] < 0})
beats_all = all(l["interval excludes 0"] and l["Δ NDCG@10 (learned − single)"] > 0 for l in lines)
reporting.record("rec/test/learned_fusion/beats_every_single_model", float(beats_all))
print("The learned hybrid beats every single model with a paired interval excluding zero:", beats_all)
for a, b in (("SASRec + sequence views", "SASRec"), ("content + synthetic queries", "content")):
    d = paired_bootstrap(per_user[b][f"ndcg@{K}"].to_numpy(), per_user[a][f"ndcg@{K}"].to_numpy(), seed=SEED)
    reporting.record(f"rec/test/{reporting.metric_key(a)}_vs_{reporting.metric_key(b)}/ndcg@{K}_delta", d["diff"])
    print(f"{a} vs {b}: {d['diff']:+.4f} NDCG@{K} [{d['low']:+.4f}, {d['high']:+.4f}] — the augmentation {verdict(d['low'], d['high'])}")
pd.DataFrame(lines).set_index("single model")

# %% [markdown]
# ## 5. Slices
#
# Averages hide who is served well. Three slices of the test users: the **target item is cold** (at
# most 5 training interactions), the user has a **short history** (at most 5 training events), and the
# target's **top category**.

# %%
history_length = train.groupby(C.COL_USER).size()
target_items = pd.Series(targets["test"]).loc[users]
slices = pd.DataFrame({
    "cold target item": (train_counts.loc[target_items].to_numpy() <= COLD_MAX_INTERACTIONS),
    "short history": (history_length.loc[users].to_numpy() <= SHORT_HISTORY),
    "top category": items.set_index(C.COL_ITEM)["top_category"].loc[target_items].to_numpy(),
}, index=pd.Index(users, name=C.COL_USER))
show = ["popularity", "ItemKNN", "ALS", "SASRec", "content", "learned fusion"]
slice_table = pd.DataFrame({
    name: {"all": per_user[name][f"ndcg@{K}"].mean(),
           "cold target item": per_user[name][f"ndcg@{K}"][slices["cold target item"]].mean(),
           "short history": per_user[name][f"ndcg@{K}"][slices["short history"]].mean()}
    for name in show}).T
for name, row in slice_table.iterrows():
    for slice_name in ("cold target item", "short history"):
        reporting.record(f"rec/test_{slice_name.replace(' ', '_')}/{reporting.metric_key(name)}/ndcg@{K}", row[slice_name])
reporting.record("rec/test/cold_target_item/users", int(slices["cold target item"].sum()))
reporting.record("rec/test/short_history/users", int(slices["short history"].sum()))
categories = slices["top category"].value_counts()
categories = categories[categories >= 20].index[:6]
by_category = pd.DataFrame({name: per_user[name][f"ndcg@{K}"].groupby(slices["top category"]).mean().loc[categories]
                            for name in show})
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
slice_table.plot.bar(ax=axes[0], rot=20, title=f"NDCG@{K} by slice (cold: {int(slices['cold target item'].sum())} users, "
                                                f"short: {int(slices['short history'].sum())})")
by_category.plot.bar(ax=axes[1], rot=20, legend=False, title=f"NDCG@{K} by the target's top category")
plt.tight_layout()
plt.show()
slice_table.round(4)

# %% [markdown]
# ## 6. Beyond accuracy
#
# Catalogue coverage (share of items recommended to anyone), novelty (mean $-\log_2 p(i)$ with $p(i)$ the
# share of users who met item $i$), intra-list diversity (mean pairwise cosine distance of a list's
# MiniLM embeddings), popularity bias (mean training popularity of recommended items), on each top-10.

# %%
embedding_of = dict(zip(item_ids, item_embeddings[False]))
popularity = train_counts
beyond = {}
for name in show:
    if name == "learned fusion":
        lists = learned_lists[learned_lists["rank"] <= K]
    else:
        model = models.get(name) or hybrids.get(name)
        lists = model.recommend(users, k=K, exclude=exclude["test"])
    recommended = lists.groupby(C.COL_USER)[C.COL_ITEM].agg(list)
    beyond[name] = {"coverage": catalog_coverage(recommended, len(item_ids)),
                    "novelty": novelty(recommended, popularity, len(users)),
                    "intra-list diversity": intra_list_diversity(recommended, embedding_of),
                    "popularity bias": popularity_bias(recommended, popularity)}
    for metric, value in beyond[name].items():
        reporting.record(f"rec/test/{reporting.metric_key(name)}/{metric.replace(' ', '_').replace('-', '_')}", value)
beyond = pd.DataFrame(beyond).T.join(results[[f"ndcg@{K}"]])
beyond.round(3)

# %% [markdown]
# ## 7. What the models recommend
#
# Three test users: their last training items, the held-out item, and the learned hybrid's top five.

# %%
title = items.set_index(C.COL_ITEM)[C.COL_TITLE].fillna("(no title)").str.slice(0, 60)
for user in np.random.default_rng(SEED).choice(users, size=3, replace=False):
    history = train[train[C.COL_USER] == user][C.COL_ITEM].tail(3).map(title).tolist()
    top5 = learned_lists[learned_lists[C.COL_USER] == user].head(5)[C.COL_ITEM]
    print(f"user {user}\n  recent history: {history}\n  held-out item: {title[targets['test'][user]]}\n"
          f"  learned hybrid: {[('✔ ' if i == targets['test'][user] else '') + title[i] for i in top5]}\n")

# %% [markdown]
# ## 8. Hybrid search (Home Depot test split)
#
# The search counterpart: BM25 and `04`'s selected bi-encoder, fused by reciprocal ranks and by a
# weight tuned on **valid**, $s = w\,\tilde s_{\text{dense}} + (1-w)\,\tilde s_{\text{BM25}}$ (min-max per query over
# the union of both top-100s), then `04`'s cross-encoder re-ranks the fused top 100 of a seeded sample of
# test queries. Same metrics and protocol as `04`.

# %%
from sentence_transformers import CrossEncoder, SentenceTransformer

from ecomrec.models import retrieval as R
from ecomrec.models.search import BM25Index, DenseIndex

products = frames["homedepot/products"]
pids, ptitles = products[C.COL_PRODUCT_ID].to_numpy(), products[C.COL_TITLE].tolist()
query_text = frames["homedepot/queries"].set_index(C.COL_QUERY_ID)[C.COL_QUERY]
finetune = root / "finetune"
bi = SentenceTransformer(str(finetune / "biencoder_best"), device=device)
dense_index = DenseIndex(pids, np.load(finetune / "biencoder_best_catalogue.npy"))
bm25 = BM25Index(pids, ptitles)
search_runs, search_qrels = {}, {}
for split in ("valid", "test"):
    search_qrels[split] = R.search_qrels(frames, split)
    qids = search_qrels[split][C.COL_QUERY_ID].unique()
    texts = query_text.loc[qids].tolist()
    found, scores = bm25.search(texts, k=100)
    bm25_run = R.run_frame(qids, found, np.where(scores > 0, scores, -1.0))
    found, scores = dense_index.search(encode(bi, texts), k=100)
    dense_run = R.run_frame(qids, found, scores)
    search_runs[split] = {"BM25": bm25_run, "fine-tuned bi-encoder": dense_run}


def fuse(runs: dict, weights: dict | None = None, rrf_k: int = 60) -> pd.DataFrame:
    """RRF (weights None) or weighted min-max fusion of runs over the union of their lists."""
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


weights_grid = np.linspace(0, 1, 11)
valid_scores = [R.evaluate_run(search_qrels["valid"], fuse(search_runs["valid"], {"fine-tuned bi-encoder": w, "BM25": 1 - w}))["ndcg@10"].mean()
                for w in weights_grid]
w_best = float(weights_grid[int(np.argmax(valid_scores))])
reporting.record("hybrid_search/valid/weighted_fusion/dense_weight", w_best)
test_runs = dict(search_runs["test"])
test_runs["RRF (BM25 + bi-encoder)"] = fuse(search_runs["test"])
test_runs[f"weighted fusion (w_dense = {w_best:.1f})"] = fuse(search_runs["test"], {"fine-tuned bi-encoder": w_best, "BM25": 1 - w_best})
search_per_query = {name: R.evaluate_run(search_qrels["test"], run) for name, run in test_runs.items()}
cross = CrossEncoder(str(finetune / "cross_encoder"), device=device)
sample = np.random.default_rng(SEED).choice(search_qrels["test"][C.COL_QUERY_ID].unique(),
                                            size=min(profile.rerank_queries, search_qrels["test"][C.COL_QUERY_ID].nunique()), replace=False)
rrf_valid = R.evaluate_run(search_qrels["valid"], fuse(search_runs["valid"]))["ndcg@10"].mean()
weighted_name = f"weighted fusion (w_dense = {w_best:.1f})"
best_fused = "RRF (BM25 + bi-encoder)" if rrf_valid > max(valid_scores) else weighted_name  # chosen on valid
sample_run = test_runs[best_fused][test_runs[best_fused][C.COL_QUERY_ID].isin(sample)]
reranked = R.rerank(cross, query_text.to_dict(), dict(zip(pids, ptitles)), sample_run, depth=100)
sample_qrels = search_qrels["test"][search_qrels["test"][C.COL_QUERY_ID].isin(sample)]
rows = []
for name, per_q in search_per_query.items():
    row = {"system": name, "queries": len(per_q)}
    for metric in R.SEARCH_METRICS:
        mean, low, high = bootstrap_ci(per_q[metric].to_numpy(), seed=SEED)
        row[metric], row[f"{metric} CI"] = mean, f"[{low:.3f}, {high:.3f}]"
        reporting.record(f"hybrid_search/test/{reporting.metric_key(name.split(' (')[0])}/{metric}", mean)
    rows.append(row)
for name, run in ((f"{best_fused} — rerank sample, before", sample_run), (f"{best_fused} → cross-encoder (sample)", reranked)):
    per_q = R.evaluate_run(sample_qrels, run)
    row = {"system": name, "queries": len(per_q)}
    for metric in R.SEARCH_METRICS:
        mean, low, high = bootstrap_ci(per_q[metric].to_numpy(), seed=SEED)
        row[metric], row[f"{metric} CI"] = mean, f"[{low:.3f}, {high:.3f}]"
    reporting.record(f"hybrid_search/test_rerank_sample/{'reranked' if 'cross' in name else 'fused'}/ndcg@10", row["ndcg@10"])
    rows.append(row)
print(f"dense weight chosen on valid: {w_best:.1f}; re-ranked: {best_fused}")
pd.DataFrame(rows).set_index("system").style.format({m: "{:.3f}" for m in R.SEARCH_METRICS})

# %% [markdown]
# ## 9. Cost

# %%
finish("rec", notebook_start)

# %% [markdown]
# ## Exercises
# 1. Tune ItemKNN's shrinkage λ on valid (0, 10, 50, 200). How do cold-item and head-item NDCG move?
# 2. Give SASRec the validation item as the last history item when scoring test. Why is that fair for
#    SASRec only if the other models get it too?
# 3. Add "days since the user's last event" as a learned-fusion feature. Does it help?
# 4. RRF's constant 60 comes from web search. Try 1 and 600 and explain the change.

# %% [markdown]
# ## Recorded results

# %%
pd.Series(reporting.load_metrics(f"{REPORT_DIR}/{PROFILE}/metrics")["05_hybrid_recommendation"], name="value", dtype=object).to_frame()
