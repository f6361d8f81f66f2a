# %% [markdown]
# # 03 · Pretraining: masked-LM from scratch and domain-adaptive pretraining
#
# A pretrained encoder has read general English (MiniLM: web text, then sentence pairs). Product titles
# are a dialect of their own — "3/4 in. x 10 ft. PVC sch. 40 pipe" — so two questions:
# can a *small* encoder learn that dialect from scratch on our catalogues alone, and does *continued*
# (domain-adaptive) masked-LM pretraining move MiniLM towards it? `04` then asks the question that
# matters: does either make a better *retriever* after fine-tuning?
#
# **Learning objectives.** After this chapter you can
# 1. build a masked-LM corpus with a held-out slice and switch synthetic text in and out;
# 2. explain the masked-LM objective and why held-out loss must be measured on fixed masks;
# 3. pretrain a 4-layer BERT from scratch with the transformers `Trainer` and
#    `DataCollatorForLanguageModeling`, and continue pretraining a pretrained encoder;
# 4. read loss curves and perplexities, and say what they can and cannot be compared with.

# %% tags=["parameters"]
PROFILE = "smoke"
SEED = 42
DATA_DIR = ""
ARTIFACT_DIR = "artifacts"
REPORT_DIR = "reports"
DEVICE = "auto"
DETERMINISTIC = False  # on CUDA: deterministic kernels, slower (make report DETERMINISTIC=1)
BF16 = "auto"  # bfloat16 mixed precision for every masked-LM stage: "auto" = where the hardware has native bf16
USE_SYNTHETIC = True  # add 02's kept synthetic queries to the training corpus
MAX_LENGTH = 64

# %%
from ecomrec.notebook import quiet_libraries

quiet_libraries()  # first, before the libraries load: no loading bars or widget warnings on the page

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec import reporting
from ecomrec.config import native_bf16
from ecomrec.notebook import begin, finish
from ecomrec.models import mlm
from ecomrec.models.encoders import minilm_tokenizer, sentence_encoder
from ecomrec.models.lm import train_wordpiece_tokenizer
from ecomrec.models.search import COLLAPSED_COSINE, encode, mean_pair_cosine
from ecomrec.models.selection import PATIENCE

profile, device, root, out_dir, frames, notebook_start = begin(
    "03_pretraining", PROFILE, SEED, DEVICE, ARTIFACT_DIR, REPORT_DIR, "pretrain",
    needs=("02_augmentation",), deterministic=DETERMINISTIC)
bf16 = native_bf16(device) if BF16 == "auto" else bool(BF16)
EVERY_STAGE = {"patience": 3, "min_delta": 0.01, "bf16": bf16}  # every stage: its held-out selection (section 3) and its precision
print(f"masked-LM training in bf16 mixed precision: {'on' if bf16 else 'off'} (BF16 = {BF16!r})")

# %% [markdown]
# ## 1. The corpus
#
# Every Home Depot title, every Office title and the first 64 words of every Office description — the
# catalogue text a search engine indexes — plus, when `USE_SYNTHETIC` is on, the synthetic queries `02`
# kept after filtering. Using *test* products' titles here is not leakage: titles are the documents a
# retriever indexes anyway; their real queries and judgments are never seen. A seeded slice of real
# texts is held out; it does not change when synthetic queries are switched on.

# %%
synthetic = None
if USE_SYNTHETIC:
    augment_dir = C.artifact_dir(ARTIFACT_DIR, PROFILE) / "augment"
    synthetic = pd.concat([pd.read_parquet(augment_dir / f"synthetic_queries_{name}.parquet")
                           for name in ("homedepot", "office")])
    synthetic = synthetic.loc[synthetic["keep"], C.COL_QUERY].tolist()
train_texts, heldout_texts, counts = mlm.mlm_corpus(frames, synthetic, heldout=profile.mlm_heldout, seed=SEED)
for source, row in counts.iterrows():
    reporting.record(f"pretrain/train/{source.replace(' ', '_')}/texts", int(row["train"]))
reporting.record("pretrain/heldout/corpus/texts", len(heldout_texts))
counts.loc["total"] = counts.sum()
counts

# %% [markdown]
# ## 2. The masked-LM objective
#
# BERT-style pretraining hides 15 % of the tokens and asks the model to restore them. Of the chosen
# positions, 80 % become `[MASK]`, 10 % a random token and 10 % stay as they are (so the model cannot
# assume that only `[MASK]` positions matter). With $M$ the set of chosen positions of a text $x$,
#
# $$\mathcal{L}_{\text{MLM}} = -\frac{1}{|M|}\sum_{i \in M} \log p_\theta\big(x_i \mid \tilde{x}\big),$$
#
# where $\tilde{x}$ is the corrupted text; the held-out perplexity is $e^{\mathcal{L}}$. Masking is random,
# so the held-out set is masked **once**, with a seed, and every evaluation scores the same tokens:
# otherwise "before" and "after" would differ partly by chance.
#
# Perplexities are comparable only under the same tokenizer: the from-scratch model predicts one of
# 8,192 WordPiece pieces trained on this corpus, MiniLM one of its 30,522. Compare each model with
# itself, before and after.
#
# ## 3. (a) A small BERT from scratch
#
# Four layers, width 256, four heads — about 5 M parameters with an 8,192-piece vocabulary trained on the
# training texts with `tokenizers`. Every stage of this chapter is selected on the held-out texts: their masked
# loss is measured five times over the step budget, the best weights are kept, and a stage stops once 3
# evaluations in a row have not lowered it by more than 0.01 nats (`ecomrec.models.lm.train_selected`); each
# printout says whether patience or the budget ended it. (The step budgets are sized to this chapter's share of the
# report; whether a stage converged inside its budget is read from its printout and its recorded `converged` flag.)
# Where the processor multiplies bfloat16 natively (printed at the top), every stage trains in bf16 mixed precision:
# the weights stay fp32, the matrix products run in bf16 (each printout gives its samples per second).

# %%
scratch_tokenizer = train_wordpiece_tokenizer(train_texts, vocab_size=8_192)
scratch = mlm.small_bert(scratch_tokenizer, layers=4, hidden=256, heads=4)
scratch_params = sum(p.numel() for p in scratch.parameters())
print(f"{scratch_params / 1e6:.1f} M parameters, {len(scratch_tokenizer):,} pieces; at most {profile.mlm_scratch_steps} steps")
scratch_result = mlm.train_mlm(scratch, scratch_tokenizer, train_texts, heldout_texts, out_dir / "scratch_checkpoints",
                               max_steps=profile.mlm_scratch_steps, batch_size=64, learning_rate=1e-3,
                               warmup_steps=max(1, profile.mlm_scratch_steps // 20), seed=SEED, device=device,
                               max_length=MAX_LENGTH, logging_steps=max(2, profile.mlm_scratch_steps // 40),
                               eval_steps=max(4, profile.mlm_scratch_steps // 5), **EVERY_STAGE)
mlm.save_encoder(scratch, scratch_tokenizer, out_dir / "scratch_bert")
reporting.record("pretrain/train/scratch_bert/parameters", scratch_params)
reporting.record("pretrain/heldout/scratch_bert/loss_before", scratch_result.eval_loss_before)
reporting.record("pretrain/heldout/scratch_bert/loss_after", scratch_result.eval_loss_after)
reporting.record("pretrain/heldout/scratch_bert/best_step", scratch_result.best_step)
reporting.record("pretrain/train/scratch_bert/converged", float(scratch_result.stopped == PATIENCE))
reporting.record("pretrain/train/scratch_bert/samples_per_second", scratch_result.samples_per_second)
reporting.record("pretrain/train/scratch_bert/seconds", scratch_result.seconds)
print(f"held-out loss {scratch_result.eval_loss_before:.2f} → {scratch_result.eval_loss_after:.2f} "
      f"(perplexity {np.exp(scratch_result.eval_loss_before):,.0f} → {np.exp(scratch_result.eval_loss_after):,.1f}), "
      f"{scratch_result.ending()}; {scratch_result.seconds:.0f} s, {scratch_result.samples_per_second:.0f} samples/s")

# %% [markdown]
# ### Context, or only which pieces are frequent?
#
# A model that ignores context can still bring the loss down from $\ln V$ (a uniform guess over $V$ pieces): it
# predicts every masked piece from the training texts' piece frequencies $\hat p(w)$ and scores the **unigram**
# cross-entropy on the same held-out masked pieces $M$,
#
# $$H_1 = -\frac{1}{|M|}\sum_{t \in M} \log \hat p(w_t).$$
#
# Pretraining from scratch usually sits near $H_1$ for a while first, every position's hidden state nearly the
# same, before it learns to use context. Two checks: the held-out loss against $H_1$, and the mean cosine between
# the sentence vectors (mean pooled, as `04` uses them) of random pairs of held-out texts. Near 1, every text gets
# nearly the same vector, and a retriever fine-tuned from it starts from nothing.

# %%
unigram = mlm.unigram_loss(scratch_tokenizer, train_texts, heldout_texts, max_length=MAX_LENGTH, seed=SEED)
spread = mean_pair_cosine(encode(sentence_encoder(out_dir / "scratch_bert", device), heldout_texts), seed=SEED)
reporting.record("pretrain/heldout/unigram/loss", unigram)
reporting.record("pretrain/heldout/scratch_bert/mean_pair_cosine", spread)
gap = scratch_result.eval_loss_after - unigram
print(f"Uniform guess ln V = {np.log(len(scratch_tokenizer)):.2f} nats, unigram H1 = {unigram:.2f}, the small BERT "
      f"{scratch_result.eval_loss_after:.2f}: {abs(gap):.2f} nats {'above' if gap > 0 else 'below'} H1. Mean cosine "
      f"between the vectors of random pairs of held-out texts: {spread:.4f}.")
context = mlm.uses_context(scratch_result.eval_loss_after, unigram)
if spread >= COLLAPSED_COSINE:
    print(f"Its sentence vectors have collapsed (≥ {COLLAPSED_COSINE}): every text gets nearly the same vector. "
          + ("" if context else "Its loss is no better than piece frequencies alone: it has not yet learnt to use context. ")
          + f"Its training ended there ({scratch_result.ending()}).")
else:
    print(f"Its sentence vectors tell texts apart (mean cosine below {COLLAPSED_COSINE}); "
          + ("it uses context: its loss is under H1." if context else "but its loss is not clearly under H1."))

# %% [markdown]
# ## 4. (b) Domain-adaptive pretraining of MiniLM
#
# The packaged all-MiniLM-L6-v2 was fine-tuned as a sentence encoder and ships **without** its
# masked-LM head. A fresh head makes the "before" loss meaningless (it would measure a random layer), so
# we go in two stages:
#
# 1. **fit the head** on a frozen encoder — the loss after this stage is the general-domain baseline:
#    what MiniLM's representations, as they are, know about our text;
# 2. **adapt**: train all weights on the domain corpus (lower learning rate), on the same fixed
#    held-out masks. The drop from stage 1's loss is what domain adaptation adds — with one caveat:
#    the head keeps learning in stage 2 as well, so part of the drop is still head fitting.

# %%
minilm_tok = minilm_tokenizer()
adapted = mlm.minilm_for_mlm()
head = mlm.train_mlm(adapted, minilm_tok, train_texts, heldout_texts, out_dir / "minilm_checkpoints",
                     max_steps=profile.mlm_head_steps, batch_size=32, learning_rate=2e-3, seed=SEED, device=device,
                     max_length=MAX_LENGTH, train_only="cls", logging_steps=max(2, profile.mlm_head_steps // 20),
                     eval_steps=max(4, profile.mlm_head_steps // 5), **EVERY_STAGE)
adapt = mlm.train_mlm(adapted, minilm_tok, train_texts, heldout_texts, out_dir / "minilm_checkpoints",
                      max_steps=profile.mlm_adapt_steps, batch_size=32, learning_rate=1e-4, seed=SEED, device=device,
                      max_length=MAX_LENGTH, warmup_steps=max(1, profile.mlm_adapt_steps // 20),
                      logging_steps=max(2, profile.mlm_adapt_steps // 40),
                      eval_steps=max(4, profile.mlm_adapt_steps // 5), **EVERY_STAGE)
mlm.save_encoder(adapted, minilm_tok, out_dir / "minilm_dapt")
reporting.record("pretrain/heldout/minilm_random_head/loss", head.eval_loss_before)
reporting.record("pretrain/heldout/minilm_fitted_head/loss", head.eval_loss_after)
reporting.record("pretrain/heldout/minilm_dapt/loss", adapt.eval_loss_after)
reporting.record("pretrain/train/minilm_dapt/samples_per_second", adapt.samples_per_second)
reporting.record("pretrain/train/minilm_head/seconds", head.seconds)
reporting.record("pretrain/train/minilm_dapt/seconds", adapt.seconds)
for stage, result in (("minilm_head", head), ("minilm_dapt", adapt)):
    reporting.record(f"pretrain/heldout/{stage}/best_step", result.best_step)
    reporting.record(f"pretrain/train/{stage}/converged", float(result.stopped == PATIENCE))
pd.DataFrame({
    "held-out MLM loss": [head.eval_loss_before, head.eval_loss_after, adapt.eval_loss_after],
    "perplexity": np.exp([head.eval_loss_before, head.eval_loss_after, adapt.eval_loss_after]),
    "kept step": [0, head.best_step, head.best_step + adapt.best_step],
    "how the stage ended": ["", head.ending(), adapt.ending()],
}, index=["MiniLM + random head", "MiniLM + fitted head (general domain)", "MiniLM after domain adaptation"]).round(2)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
axes[0].plot(scratch_result.history["step"], scratch_result.history["loss"], label="training loss")
axes[0].plot(scratch_result.valid_history["step"], scratch_result.valid_history["eval_loss"], marker=".",
             color="tab:red", label=f"held-out (kept: {scratch_result.eval_loss_after:.2f})")
axes[0].set(title="(a) small BERT from scratch", xlabel="step", ylabel="MLM loss (nats / masked token)")
offset = head.best_step  # stage 2 starts from stage 1's kept weights
axes[1].plot(head.history["step"], head.history["loss"], label="stage 1: head only")
axes[1].plot(adapt.history["step"] + offset, adapt.history["loss"], label="stage 2: all weights")
for result, shift, colour, label in ((head, 0, "tab:gray", "held-out, stage 1"), (adapt, offset, "tab:red", "held-out, stage 2")):
    axes[1].plot(result.valid_history["step"] + shift, result.valid_history["eval_loss"], marker=".", color=colour,
                 label=f"{label} (kept: {result.eval_loss_after:.2f})")
axes[1].set(title="(b) MiniLM: head fitting, then domain adaptation", xlabel="step")
for ax in axes:
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. What the models fill in
#
# A qualitative check on held-out-style titles: the five most likely pieces for a masked position,
# from the adapted MiniLM and the from-scratch model.

# %%
import torch

probes = ["cordless [MASK] driver kit with battery", "3/4 in. x 10 ft. pvc [MASK] pipe",
          "black ink [MASK] for hp printers", "stainless steel kitchen [MASK] with sprayer"]


def fill(model, tokenizer, text: str, k: int = 5) -> str:
    model.eval()
    enc = tokenizer(text.replace("[MASK]", tokenizer.mask_token), return_tensors="pt").to(model.device)
    with torch.inference_mode():
        logits = model(**{k_: v for k_, v in enc.items() if k_ != "token_type_ids"}).logits
    position = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0]
    return ", ".join(tokenizer.convert_ids_to_tokens(logits[0, position].topk(k).indices.tolist()))


pd.DataFrame({"adapted MiniLM": [fill(adapted, minilm_tok, p) for p in probes],
              "small BERT (scratch)": [fill(scratch, scratch_tokenizer, p) for p in probes]}, index=probes)

# %% [markdown]
# ## 6. Cost
#
# The whole chapter's wall time and peak memory, against the full-profile budget (20 min, 8 GiB on two
# CPU cores).

# %%

finish("pretrain", notebook_start)

# %% [markdown]
# ## Reading the numbers
#
# The cell below reads the held-out losses recorded above (the smoke tests check their direction). A
# lower MLM loss says the encoder predicts *our* tokens better; it does not say
# that its sentence embeddings retrieve better. MiniLM's embeddings come from contrastive training that
# MLM does not optimise, and continued MLM can even wash some of it out. `04` fine-tunes retrievers from
# all three starting points (packaged MiniLM, adapted MiniLM, small BERT) and measures that directly.

# %%
for label, before, after in (("small BERT from scratch", scratch_result.eval_loss_before, scratch_result.eval_loss_after),
                             ("MiniLM, fitted head → domain-adapted", head.eval_loss_after, adapt.eval_loss_after)):
    print(f"{label}: held-out MLM loss {before:.3f} → {after:.3f} "
          f"({'fell' if after < before else 'did not fall'}, perplexity ×{np.exp(after - before):.2f})")

# %% [markdown]
# ## Exercises
# 1. Set `USE_SYNTHETIC = False`. Does the held-out loss change? (The held-out texts are the same.)
# 2. Mask whole words instead of pieces (`whole_word_mask=True` in the collator): why might that suit
#    titles full of split model numbers?
# 3. Stage 2 also trains the head. Design a control that separates "more head training" from "domain
#    adaptation of the encoder", and estimate its cost on two CPU cores.
# 4. Double the small BERT's width. How do parameters, samples/s and the held-out loss after the same
#    number of steps change?
# 5. Raise `mlm_scratch_steps` (the `gpu` profile gives 4,000). After how many steps does the held-out loss
#    fall clearly below $H_1$, and the mean cosine between texts' vectors leave 1? Fine-tune from that checkpoint in `04`.

# %% [markdown]
# ## Recorded results

# %%
pd.Series(reporting.load_metrics(f"{REPORT_DIR}/{PROFILE}/metrics")["03_pretraining"], name="value", dtype=object).to_frame()
