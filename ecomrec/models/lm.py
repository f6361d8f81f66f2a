"""Small generative language models (T5 encoder-decoder or GPT-2 decoder) trained from scratch with the
transformers Trainer, and the small WordPiece tokenizer they use."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from ecomrec import config as C
from ecomrec.models.selection import BUDGET, EarlyStopping


@dataclass
class TrainResult:
    """Loss curve (one row per logging step), held-out loss before/after (after = the kept checkpoint's), wall
    time and throughput; with held-out selection, the held-out loss per evaluation (`valid_history`: step,
    eval_loss; step 0 = before), the kept step and why training ended (`selection.PATIENCE` or `BUDGET`)."""

    history: pd.DataFrame
    eval_loss_before: float
    eval_loss_after: float
    seconds: float
    samples_per_second: float
    valid_history: pd.DataFrame | None = None
    best_step: int | None = None
    stopped: str = BUDGET
    steps: int = 0

    def ending(self) -> str:
        """How training ended, for a printout: the kept step and whether patience or the budget stopped it."""
        if self.best_step is None:
            return f"{self.steps:,} steps, no held-out selection (the step budget)"
        return (f"kept step {self.best_step:,} of {self.steps:,}: " + (
            "converged (patience)" if self.stopped != BUDGET else "STOPPED BY ITS STEP BUDGET before patience ran out"))


def train_selected(trainer, eval_steps: int | None = None, patience: int = 3, min_delta: float = 0.01) -> TrainResult:
    """Run a transformers `Trainer` and measure held-out loss before and after.

    With `eval_steps`, the held-out loss is measured every `eval_steps` optimiser steps (the trainer must be built
    with `eval_strategy="steps"` and those steps); the weights of the best evaluation are kept in memory, training
    stops once `patience` evaluations in a row have not lowered the loss by more than `min_delta` nats, and the
    kept weights are loaded back before "after" is measured (`ecomrec.models.selection.EarlyStopping`; step 0, the
    untrained model, takes part: training that never helps keeps it). Without, it trains to its step budget."""
    from transformers import TrainerCallback

    model = trainer.model
    before = trainer.evaluate()["eval_loss"]
    stop = EarlyStopping(patience, min_delta=min_delta) if eval_steps else None
    if stop is not None:
        if trainer.args.eval_strategy != "steps" or trainer.args.eval_steps != eval_steps:
            raise ValueError(f"build the Trainer with eval_strategy='steps', eval_steps={eval_steps}")
        stop.update(-before, 0, state=model.state_dict)

        class OnHeldout(TrainerCallback):
            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                if stop.update(-metrics["eval_loss"], state.global_step, state=model.state_dict):
                    control.should_training_stop = True

        callback = OnHeldout()
        trainer.add_callback(callback)
    start = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - start
    if stop is not None:
        trainer.remove_callback(callback)
        stop.restore(model)
    log = list(trainer.state.log_history)  # before "after" adds its own evaluation
    after = trainer.evaluate()["eval_loss"]
    history = pd.DataFrame([row for row in log if "loss" in row and "eval_loss" not in row], columns=["step", "epoch", "loss"])
    valid = None if stop is None else pd.DataFrame(
        [{"step": 0, "eval_loss": before}] + [{"step": row["step"], "eval_loss": row["eval_loss"]} for row in log
                                              if "eval_loss" in row and row.get("step", 0) > 0])
    return TrainResult(history=history.reset_index(drop=True), eval_loss_before=before, eval_loss_after=after,
                       seconds=seconds, samples_per_second=float(output.metrics.get("train_samples_per_second", 0.0)),
                       valid_history=valid, best_step=None if stop is None else stop.best_step,
                       stopped=BUDGET if stop is None else stop.stopped, steps=trainer.state.global_step)


def small_gpt2(tokenizer, n_layer: int = 4, n_embd: int = 128, n_head: int = 4, n_positions: int = 128):
    """A randomly initialised GPT-2 sized to a few million parameters, using `tokenizer`'s vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    bos = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, bos_token_id=bos, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config)


def small_t5(tokenizer, d_model: int = 128, layers: int = 3, heads: int = 4, d_ff: int = 512):
    """A randomly initialised T5 encoder-decoder of about 2 M parameters using `tokenizer`'s vocabulary.

    The decoder starts from `[CLS]` and stops at `[SEP]`; cross-attention lets it copy title words,
    which it learns much faster than a decoder-only model of the same size.
    """
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_ff=d_ff, d_kv=d_model // heads, num_layers=layers,
                      num_decoder_layers=layers, num_heads=heads, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.sep_token_id, decoder_start_token_id=tokenizer.cls_token_id,
                      bos_token_id=tokenizer.cls_token_id)
    return T5ForConditionalGeneration(config)


def pair_dataset(tokenizer, sources: list[str], targets: list[str], max_length: int = 64, seq2seq: bool = False):
    """Tokenise (source, target) pairs for training a generator of targets.

    Decoder-only: `[CLS] source [SEP] target [SEP]` with the loss on the target part only.
    Encoder-decoder (`seq2seq=True`): the encoder reads `[CLS] source [SEP]`, the labels are `target [SEP]`.
    """
    from datasets import Dataset

    if seq2seq:
        src = tokenizer(list(sources), truncation=True, max_length=max_length)
        tgt = tokenizer(list(targets), truncation=True, max_length=24)
        return Dataset.from_dict({"input_ids": src["input_ids"], "attention_mask": src["attention_mask"],
                                  "labels": [ids[1:] for ids in tgt["input_ids"]]})
    enc = tokenizer(list(sources), list(targets), truncation="only_first", max_length=max_length)
    labels = [[tok if seg == 1 else -100 for tok, seg in zip(ids, segs)]
              for ids, segs in zip(enc["input_ids"], enc["token_type_ids"])]
    return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})


def train_lm(model, tokenizer, train_data, valid_data, out_dir: str | Path, epochs: float = 3.0,
             batch_size: int = 64, learning_rate: float = 1e-3, seed: int = C.SEED, device: str = "cpu",
             logging_steps: int = 50, max_steps: int = -1, warmup_steps: int = 100, eval_steps: int | None = None,
             patience: int = 3, min_delta: float = 0.01, bf16: bool = False) -> TrainResult:
    """Train a causal or encoder-decoder LM with the transformers Trainer; held-out loss before and after, and
    with `eval_steps` the held-out selection of `train_selected` (early stopping, the best weights kept).
    `bf16`: bfloat16 mixed precision (autocast, the weights stay fp32), for hardware that has it natively
    (`config.native_bf16`)."""
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(out_dir), num_train_epochs=epochs, max_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size * 2, learning_rate=learning_rate, warmup_steps=warmup_steps,
        lr_scheduler_type="cosine", weight_decay=0.01, train_sampling_strategy="group_by_length", logging_steps=logging_steps,
        eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps,
        save_strategy="no", report_to=[], seed=seed, use_cpu=device == "cpu", dataloader_num_workers=0, bf16=bf16,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding=True)
    trainer = Trainer(model=model, args=args, train_dataset=train_data, eval_dataset=valid_data, data_collator=collator)
    return train_selected(trainer, eval_steps, patience, min_delta)


def train_wordpiece_tokenizer(texts: list[str], vocab_size: int = 4096):
    """A lower-casing WordPiece tokenizer trained on `texts`, with BERT-style `[CLS] a [SEP] b [SEP]` pairs.
    The same texts give the same tokenizer, run after run (tested).

    A small vocabulary keeps the output softmax cheap: with MiniLM's 30,522 tokens the LM head costs
    more than the whole 4-layer transformer, in training and at every decoding step.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

    def blank() -> Tokenizer:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        return tok

    trainee = blank()
    # The trainer numbers each "##x" piece (a character inside a word) in hash-map order, which changes from run
    # to run, and breaks ties between equally frequent merges by those numbers: the learnt vocabulary itself
    # then varies (huggingface/tokenizers#1794). Handing it every "##x" up front, sorted, fixes their numbers.
    inner = sorted({"##" + ch for text in texts
                    for word, _ in trainee.pre_tokenizer.pre_tokenize_str(trainee.normalizer.normalize_str(text))
                    for ch in word[1:]})
    # (they count towards `vocab_size` as they did when the trainer made them itself)
    trainee.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials + inner,
                                                                 show_progress=False))
    # ... and only as numbered pieces: the final tokenizer (a fresh one) knows them as ordinary vocabulary.
    # Pieces are renumbered in sorted order, so that every embedding row a seed initialises is the same too.
    ordered = specials + sorted(piece for piece in trainee.get_vocab(with_added_tokens=True) if piece not in specials)
    tok = blank()
    tok.model = models.WordPiece({piece: i for i, piece in enumerate(ordered)}, unk_token="[UNK]")
    tok.add_special_tokens(specials)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])
