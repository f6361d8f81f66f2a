"""Masked-language-model (MLM) pretraining: a small BERT from scratch and domain-adaptive pretraining of
the packaged MiniLM, with the transformers `Trainer` and `DataCollatorForLanguageModeling`.

Held-out loss is measured on a *fixed* masking of the held-out texts (masked once, with a seed), so
"before" and "after" are computed on exactly the same masked tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec.models.lm import TrainResult, train_selected


def mlm_corpus(frames: dict[str, pd.DataFrame], synthetic_queries: Sequence[str] | None = None,
               heldout: int = 2_000, seed: int = C.SEED, max_description_words: int = 64) -> tuple[list[str], list[str], pd.DataFrame]:
    """Domain text for MLM: Home Depot titles, Office titles and descriptions, optional synthetic queries.

    Returns (train texts, held-out texts, a per-source count table). The held-out slice is a seeded
    sample of the *real* texts (never synthetic queries), so switching the synthetic queries on or off
    leaves it unchanged. Descriptions are cut to their first `max_description_words` words.
    """
    items = frames["office/items"]
    descriptions = items["description"].fillna("").str.split().str[:max_description_words].str.join(" ")
    sources = {
        "homedepot titles": frames["homedepot/products"][C.COL_TITLE],
        "office titles": items[C.COL_TITLE].fillna(""),
        "office descriptions": descriptions,
    }
    real = pd.concat([pd.DataFrame({"text": s.astype(str).str.strip(), "source": name}) for name, s in sources.items()],
                     ignore_index=True)
    real = real[real["text"].str.len() > 0].drop_duplicates("text").reset_index(drop=True)
    if heldout >= len(real):
        raise ValueError(f"held-out slice of {heldout} texts leaves nothing to train on ({len(real)} texts)")
    rng = np.random.default_rng(seed)
    is_heldout = np.zeros(len(real), dtype=bool)
    is_heldout[rng.choice(len(real), size=heldout, replace=False)] = True
    parts = [real[~is_heldout]]
    if synthetic_queries is not None:
        synthetic = pd.Series(list(synthetic_queries), dtype=str).drop_duplicates()
        parts.append(pd.DataFrame({"text": synthetic[~synthetic.isin(real["text"])], "source": "synthetic queries"}))
    train = pd.concat(parts, ignore_index=True)
    counts = pd.DataFrame({"train": train["source"].value_counts(), "held out": real[is_heldout]["source"].value_counts()})
    return train["text"].tolist(), real.loc[is_heldout, "text"].tolist(), counts.fillna(0).astype(int)


def _sparse_mlm_class():
    """BertForMaskedLM that, given labels, runs the vocabulary head only at the masked positions.

    The loss is the same mean cross-entropy over masked tokens; but the head (hidden → vocabulary) costs
    as much per position as MiniLM's whole encoder, and only ~15 % of positions carry a label, so
    training runs about 1.8× faster for MiniLM. Without labels it returns logits at every position.
    """
    import torch
    from transformers import BertForMaskedLM
    from transformers.modeling_outputs import MaskedLMOutput

    class SparseHeadBertForMaskedLM(BertForMaskedLM):
        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
            if labels is None:
                return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                       token_type_ids=token_type_ids, **kwargs)
            hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               return_dict=True).last_hidden_state
            chosen = labels != -100
            logits = self.cls(hidden[chosen])
            loss = torch.nn.functional.cross_entropy(logits, labels[chosen])
            return MaskedLMOutput(loss=loss, logits=logits)

    return SparseHeadBertForMaskedLM


def small_bert(tokenizer, layers: int = 4, hidden: int = 256, heads: int = 4, max_positions: int = 128):
    """A randomly initialised BERT for masked-LM pretraining (4 layers × 256 by default)."""
    from transformers import BertConfig

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=4 * hidden, max_position_embeddings=max_positions,
                        pad_token_id=tokenizer.pad_token_id)
    return _sparse_mlm_class()(config)


def minilm_for_mlm(path: str | Path | None = None):
    """The packaged MiniLM encoder with a masked-LM head on top.

    all-MiniLM-L6-v2 ships without its MLM head (it was trained further as a sentence encoder), so the
    head's transform layer is freshly initialised; its output layer is tied to the word embeddings.
    """
    import logging

    from transformers.utils import logging as hf_logging

    from ecomrec.models.encoders import minilm_path

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)  # the "newly initialised head" warning is expected, said above
    try:
        return _sparse_mlm_class().from_pretrained(str(path or minilm_path()))
    finally:
        hf_logging.set_verbosity(previous)


def tokenize_texts(tokenizer, texts: Sequence[str], max_length: int = 64):
    """A `datasets.Dataset` of token ids (truncated to `max_length`), for the MLM collator."""
    from datasets import Dataset

    enc = tokenizer(list(texts), truncation=True, max_length=max_length, return_special_tokens_mask=True)
    return Dataset.from_dict({"input_ids": enc["input_ids"], "special_tokens_mask": enc["special_tokens_mask"]})


class MLMCollator:
    """Masks training batches at random (15 %: 80 % [MASK], 10 % random, 10 % kept) and only pads
    batches that already carry labels, i.e. a held-out set masked once by `fixed_masks`."""

    def __init__(self, tokenizer, mlm_probability: float = 0.15, seed: int | None = None):
        from transformers import DataCollatorForLanguageModeling

        self.tokenizer = tokenizer
        self.masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, seed=seed)

    def __call__(self, features: list[dict]) -> dict:
        if "labels" not in features[0]:
            return self.masker(features)
        import torch

        width = max(len(f["input_ids"]) for f in features)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([f["input_ids"] + [pad] * (width - len(f["input_ids"])) for f in features])
        labels = torch.tensor([f["labels"] + [-100] * (width - len(f["labels"])) for f in features])
        return {"input_ids": ids, "attention_mask": (ids != pad).long(), "labels": labels}


def fixed_masks(tokenizer, data, mlm_probability: float = 0.15, seed: int = C.SEED):
    """The held-out set masked once, deterministically: the same masked tokens for every evaluation."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling

    masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, seed=seed)
    input_ids, labels = [], []
    for row in data:
        batch = masker([row])
        input_ids.append(batch["input_ids"][0].tolist())
        labels.append(batch["labels"][0].tolist())
    return Dataset.from_dict({"input_ids": input_ids, "labels": labels})


CONTEXT_MARGIN = 0.1  # nats under the unigram baseline that a held-out MLM loss must reach to show use of context


def uses_context(loss: float, unigram: float, margin: float = CONTEXT_MARGIN) -> bool:
    """Whether a held-out MLM `loss` is clearly (`margin` nats) under the `unigram` baseline of `unigram_loss`:
    the model predicts masked pieces better than their frequencies alone, so it has learnt to use context."""
    return loss < unigram - margin


def unigram_loss(tokenizer, train_texts: Sequence[str], heldout_texts: Sequence[str], max_length: int = 64,
                 seed: int = C.SEED) -> float:
    """The held-out masked-LM loss (nats per masked token) of a model that ignores context: it predicts every masked
    token from the training texts' piece frequencies, add-one smoothed over the vocabulary. The held-out tokens are
    `train_mlm`'s (the same `fixed_masks` with the same seed), so the two losses compare directly. A model near this
    loss has learnt which pieces are frequent and nothing of context: the first plateau of pretraining from scratch."""
    if len(train_texts) == 0 or len(heldout_texts) == 0:
        raise ValueError(f"need training and held-out texts, got {len(train_texts)} and {len(heldout_texts)}")
    train = tokenize_texts(tokenizer, train_texts, max_length)
    ids = np.concatenate([np.asarray(row, dtype=np.int64) for row in train["input_ids"]])
    special = np.concatenate([np.asarray(row, dtype=bool) for row in train["special_tokens_mask"]])
    counts = np.bincount(ids[~special], minlength=len(tokenizer)).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    heldout = fixed_masks(tokenizer, tokenize_texts(tokenizer, heldout_texts, max_length), seed=seed)
    labels = np.concatenate([np.asarray(row, dtype=np.int64) for row in heldout["labels"]])
    labels = labels[labels != -100]
    if len(labels) == 0:
        raise ValueError("the held-out texts have no masked token to score")
    return float(-log_p[labels].mean())


def train_mlm(model, tokenizer, train_texts: Sequence[str], heldout_texts: Sequence[str], out_dir: str | Path,
              max_steps: int, batch_size: int = 32, learning_rate: float = 5e-4, seed: int = C.SEED,
              device: str = "cpu", logging_steps: int = 20, max_length: int = 64, warmup_steps: int = 0,
              train_only: str | None = None, eval_steps: int | None = None, patience: int = 3,
              min_delta: float = 0.01, bf16: bool = False) -> TrainResult:
    """Masked-LM training with the Trainer; held-out loss before and after on the same fixed masks, and with
    `eval_steps` the held-out selection of `lm.train_selected` (early stopping, the best weights kept). `bf16`:
    bfloat16 mixed precision (autocast, the weights stay fp32), for hardware that has it natively.

    `train_only="cls"` freezes everything but the MLM head (used to fit MiniLM's new head before
    domain adaptation, so that "before" measures the general-domain encoder, not a random head).
    """
    from transformers import Trainer, TrainingArguments

    if max_steps <= 0:
        raise ValueError("max_steps must be positive")
    for name, parameter in model.named_parameters():
        parameter.requires_grad = train_only is None or name.startswith(train_only)
    train_data = tokenize_texts(tokenizer, train_texts, max_length)
    eval_data = fixed_masks(tokenizer, tokenize_texts(tokenizer, heldout_texts, max_length), seed=seed)
    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size * 2, learning_rate=learning_rate, warmup_steps=warmup_steps,
        lr_scheduler_type="linear", weight_decay=0.01, logging_steps=logging_steps,
        eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps,
        save_strategy="no", report_to=[], seed=seed, use_cpu=device == "cpu", dataloader_num_workers=0,
        remove_unused_columns=False, bf16=bf16,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train_data, eval_dataset=eval_data,
                      data_collator=MLMCollator(tokenizer, seed=seed))
    try:
        return train_selected(trainer, eval_steps, patience, min_delta)
    finally:
        for parameter in model.parameters():
            parameter.requires_grad = True


def save_encoder(model, tokenizer, path: str | Path) -> Path:
    """Save the encoder under an MLM model (no head) with its tokenizer, loadable by `sentence_encoder`
    (atomically: the folder appears complete or not at all)."""
    from ecomrec.storage import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        model.base_model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return path
