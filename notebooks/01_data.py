# %% [markdown]
# # 01 · Data: two real e-commerce datasets, cleaned, checked and split
#
# Every later chapter trains and evaluates on what this notebook produces, so it is worth being
# slow and careful here. We work with two real public datasets:
#
# * **Home Depot product search relevance** (Kaggle, 2016): real customer search terms, product
#   titles, and graded human relevance judgments (1 = irrelevant … 3 = highly relevant). This is
#   our *search* task.
# * **Amazon Office Products 5-core** (McAuley et al., 2014): who rated which item and when, plus item
#   titles, brands, category paths and descriptions. This is our *recommendation* task.
#
# **Learning objectives.** After this chapter you can
# 1. load both datasets reproducibly and verify that the bytes are the ones you expect (sha256);
# 2. say what each cleaning step does and *measure* what it caught;
# 3. read the shape of the data from plots: query lengths, label skew, long tails, time;
# 4. build splits that do not leak: queries never shared between search splits, and leave-one-out
#    and temporal protocols for recommendation, with a documented rule for same-day events.

# %% tags=["parameters"]
PROFILE = "smoke"
SEED = 42
DATA_DIR = ""
ARTIFACT_DIR = "artifacts"
REPORT_DIR = "reports"
DEVICE = "auto"

# %%
from ecomrec.notebook import quiet_libraries

quiet_libraries()  # first, before the libraries load: no loading bars or widget warnings on the page

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec import reporting
from ecomrec.data import summary
from ecomrec.data.prepare import prepare
from ecomrec.data.sources import HOMEDEPOT_TRAIN, OFFICE_META, OFFICE_REVIEWS
from ecomrec.notebook import run_identity

C.set_seeds(SEED)
reporting.start("01_data", f"{REPORT_DIR}/{PROFILE}/metrics")
pd.set_option("display.max_colwidth", 90)
pd.set_option("display.width", 200)
print("profile:", C.get_profile(PROFILE))
print("data directory:", C.resolve_data_dir(DATA_DIR or None))

# %% [markdown]
# ## 1. Load, verify, clean, split
#
# `prepare()` does the whole pipeline in one call; the rest of the notebook opens it up. It
#
# 1. finds each file in the data directory and checks its **sha256** against the checksum published
#    in the dataset's `PROVENANCE.md` (a corrupt or different file stops here with an error that says
#    how to get the right one — never an empty frame);
# 2. reads the raw formats (a latin-1 CSV inside a zip; JSON lines, where the original Amazon meta
#    files are Python dict literals — both are accepted);
# 3. cleans (next section), runs **schema checks** on every frame (types, ranges, key uniqueness,
#    references between frames), subsamples for the `smoke` profile, splits, and writes parquet files
#    that are byte-identical for the same seed.

# %%
prepared = prepare(PROFILE, DATA_DIR or None, ARTIFACT_DIR, SEED)
hd, office, frames = prepared.homedepot, prepared.office, prepared.frames
for source in (HOMEDEPOT_TRAIN, OFFICE_REVIEWS, OFFICE_META):
    print(f"verified {source.folder}/{source.name}  sha256 {source.sha256[0][:16]}…")
print(f"wrote {len(frames)} parquet files to {prepared.out_dir}")

# %% [markdown]
# ## 2. Dataset cards
#
# Counts of the files as read, next to the counts their `PROVENANCE.md` states, and after cleaning.
# The first two columns must agree exactly; the third shows what cleaning changed.

# %%
cards = summary.dataset_cards(hd, office)
assert (cards["as read"] == cards["PROVENANCE.md"]).all(), cards
for row in cards.to_dict("records"):
    reporting.record(f"data/{row['dataset']}/{row['count']}", row["as read"])
    reporting.record(f"data/{row['dataset']}/clean/{row['count']}", row["after cleaning"])
cards

# %% [markdown]
# ## 3. What the data quality checks caught
#
# Cleaning rules, each applied by a small tested function in `ecomrec.data.clean`:
#
# * **Text**: HTML entities are unescaped (titles contain `&amp;`, `&quot;`, …), Unicode is NFKC-normalised
#   and whitespace collapsed. Queries are also lower-cased: `Angle Bracket` and `angle bracket ` are
#   the same query.
# * **Duplicate judgments**: once queries are normalised, a few (query, product) pairs occur twice;
#   their relevance scores are **averaged** and `n_judgments` keeps the count.
# * **One title per product**: a few products carry two spellings of their title; the most frequent
#   normalised one is kept.
# * **Empty titles** (Home Depot) are dropped: there is nothing to search. Office items without a
#   title are *kept* and counted: their brand, category path and description still describe them, and
#   dropping them would change the standard 5-core benchmark.
# * **k-core**: users and items with fewer than k events are removed, repeatedly, until none is left
#   (the Office file is already 5-core, so this is a check that removes nothing in the full profile).
# * **Same-day events**: Amazon timestamps have *day* precision. Events of one user on one day are
#   ordered by a fixed hash of (user, item) — arbitrary, but deterministic and independent of the file's
#   line order. Not by item id: Amazon's ids (ASINs) were issued over time, so an id order would make the
#   newest product the last event of every tied day, and leave-one-out test targets would lean towards
#   products the training data has barely seen.

# %%
prepared.log

# %%
raw_titles = hd.raw["product_title"]
n_entities = int(raw_titles.str.contains(r"&(?:amp|quot|#\d+);", regex=True).sum())
office_ts = office.interactions.groupby(C.COL_USER)[C.COL_TIMESTAMP]
same_day = float((office_ts.diff() == 0).sum() / office_ts.diff().notna().sum())
reporting.record("data/homedepot/raw/titles_with_html_entities", n_entities)
reporting.record("data/amazon-office/clean/same_day_consecutive_share", same_day)
print(f"{n_entities:,} raw Home Depot judgment rows have HTML entities in the title, e.g.")
print("  ", raw_titles[raw_titles.str.contains("&amp;")].iloc[0])
print(f"{same_day:.1%} of a user's consecutive Office events share a day → the tie rule matters")

# %% [markdown]
# ## 4. Home Depot: what do searches look like?
#
# Queries are short (a median of three words), labels are skewed towards *relevant* (the competition
# sampled mostly results that the site's engine had shown), and a query has a median of seven judged
# products — but many have only one, which makes per-query metrics on those queries very coarse.
# Skewed labels matter later: a model that predicts "fairly relevant" for everything has a low RMSE
# but ranks nothing, which is why `04` and `06` report ranking metrics.

# %%
query_words = hd.queries[C.COL_QUERY].str.split().str.len()
per_query = hd.judgments.groupby(C.COL_QUERY_ID).size()
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
axes[0].hist(query_words, bins=np.arange(1, query_words.max() + 2) - 0.5, color="tab:blue")
axes[0].set(title="Query length", xlabel="words", ylabel="queries")
axes[1].hist(hd.judgments[C.COL_RELEVANCE], bins=np.linspace(1, 3, 25), color="tab:orange")
axes[1].set(title="Relevance (mean of ≥3 raters)", xlabel="relevance", ylabel="judgments")
axes[2].hist(per_query, bins=np.arange(1, per_query.max() + 2) - 0.5, color="tab:green")
axes[2].set(title="Judged products per query", xlabel="products", ylabel="queries")
plt.tight_layout()
plt.show()
reporting.record("data/homedepot/clean/median_query_words", float(query_words.median()))
reporting.record("data/homedepot/clean/median_judgments_per_query", float(per_query.median()))
mean_relevance = reporting.record("data/homedepot/clean/mean_relevance", float(hd.judgments[C.COL_RELEVANCE].mean()))
print(f"median query: {query_words.median():.0f} words; median {per_query.median():.0f} judged products per query "
      f"({(per_query == 1).sum():,} queries have only one); mean relevance {mean_relevance:.2f}")

# %%
hd.judgments.merge(hd.queries, on=C.COL_QUERY_ID).merge(hd.products, on=C.COL_PRODUCT_ID).sample(8, random_state=SEED)[
    [C.COL_QUERY, C.COL_TITLE, C.COL_RELEVANCE]]

# %% [markdown]
# ## 5. Amazon Office: who buys what, and when?
#
# Recommendation data has long tails on both sides: a few items and users have most of the events.
# The log-log rank plots show it. Ratings are mostly 4–5 stars, so we treat every rating as an
# *interaction* (implicit feedback), the usual choice for this benchmark. Activity grows sharply after
# 2009 and peaks in 2014, which is why a temporal split (section 6) is much harder than leave-one-out.

# %%
events = office.interactions
user_counts = events[C.COL_USER].value_counts().to_numpy()
item_counts = events[C.COL_ITEM].value_counts().to_numpy()
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
axes[0].loglog(np.arange(1, len(user_counts) + 1), user_counts, label="users")
axes[0].loglog(np.arange(1, len(item_counts) + 1), item_counts, label="items")
axes[0].set(title="Long tail", xlabel="rank", ylabel="events")
axes[0].legend()
events[C.COL_RATING].value_counts().sort_index().plot.bar(ax=axes[1], color="tab:orange", title="Ratings")
axes[1].set(xlabel="stars", ylabel="events")
monthly = pd.to_datetime(events[C.COL_TIMESTAMP], unit="s").dt.to_period("M").value_counts().sort_index()
axes[2].plot(monthly.index.to_timestamp(), monthly.to_numpy(), color="tab:green")
axes[2].set(title="Activity over time", xlabel="month", ylabel="events")
plt.tight_layout()
plt.show()
top20_share = float(item_counts[: max(1, len(item_counts) // 5)].sum() / item_counts.sum())
reporting.record("data/amazon-office/clean/top20pct_items_event_share", top20_share)
_ = reporting.record("data/amazon-office/clean/median_user_events", float(np.median(user_counts)))
print(f"the 20% most popular items hold {top20_share:.1%} of the events")

# %%
categories = office.items["top_category"].value_counts().head(15)
ax = categories.sort_values().plot.barh(figsize=(8, 5), color="tab:purple")
ax.set(title="Items per top-level category (under 'Office Products')", xlabel="items")
plt.tight_layout()
plt.show()
office.items.sample(5, random_state=SEED)[[C.COL_ITEM, C.COL_TITLE, "brand", "category"]]

# %% [markdown]
# ## 6. Splits that do not leak
#
# **Search** is split *by query*: all judgments of a query go to one split, so a model is tested on
# queries it has never seen. Because query ids are assigned to *normalised* query texts, no
# normalised query can occur in two splits — checked below. **Train** trains, **valid** selects
# (early stopping, fusion weights), **test** is touched only to report.
#
# **Recommendation** uses two protocols:
# * *leave-one-out*: each user's last event is the test target, the second-last the validation
#   target, the rest is training history (the standard protocol for sequential recommenders);
# * *global temporal*: one cut in time for everybody — nothing after the cut is used for training,
#   which is how a deployed system meets the future. It is harder: many test users and items are new.

# %%
search_splits = summary.search_split_summary(frames)
shared = summary.shared_normalized_queries(frames)
assert shared == 0
reporting.record("search/all/split/shared_normalized_queries", shared)
for row in search_splits.to_dict("records"):
    reporting.record(f"search/{row['split']}/split/queries", row["queries"])
    reporting.record(f"search/{row['split']}/split/judgments", row["judgments"])
print(f"normalised queries shared between splits: {shared}")
search_splits

# %%
rec_splits = summary.rec_split_summary(frames)
for row in rec_splits.to_dict("records"):
    for count in ("events", "users", "items unseen in train"):
        reporting.record(f"rec/{row['split']}/{row['protocol']}/{count.replace(' ', '_')}", row[count])
rec_splits

# %% [markdown]
# Test items never seen in training are the *cold items* that content models and synthetic interactions
# (`02`, `05`) are meant to help with. How many each protocol has, from the table above:

# %%
test_rows = rec_splits[rec_splits["split"] == "test"].set_index("protocol")
for protocol, label in (("loo", "leave-one-out"), ("temporal", "temporal split")):
    row = test_rows.loc[protocol]
    print(f"{label}: {row['items unseen in train']:,} of {row['items']:,} distinct test items "
          f"({row['items unseen in train'] / row['items']:.1%}) never occur in its training events")

# %% [markdown]
# ## Exercises
# 1. Change the tie rule for same-day events to "item id". How many leave-one-out test targets change,
#    and how does the training popularity of the test targets move? What does that tell you about the
#    noise in a leave-one-out benchmark on day-precision data?
# 2. The search split is random over queries. Build a split where test queries share *no product* with
#    train queries. How many queries survive, and why would such a split be harder?
# 3. Plot relevance against query length. Are long queries judged less relevant on average?
# 4. Find the products with two titles (`prepared.log` says how many). Is "most frequent" the right rule
#    for them, or would the longest title be better for search?

# %% [markdown]
# ## Recorded results
# Every figure quoted above was recorded with `ecomrec.reporting.record`; the table is what the report
# index and the tests read.

# %%
reporting.complete(**run_identity(PROFILE, SEED))  # later notebooks accept this run's data only once it got here
pd.Series(reporting.load_metrics(f"{REPORT_DIR}/{PROFILE}/metrics")["01_data"], name="value", dtype=object).to_frame()
