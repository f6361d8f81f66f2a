"""SASRec (Kang & McAuley, 2018): a causal self-attention model of the next item in a user's sequence.

Sequences are right-padded: with a causal mask a real position only attends to earlier (real)
positions, so no key-padding mask is needed and no attention row is empty. Training predicts every
next item with a softmax over the whole catalogue (cross-entropy), which on a few thousand items is
cheap and converges faster than the original one-negative binary loss.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from ecomrec.progress import progress as progress_bar

from ecomrec import config as C
from ecomrec.augment.sequences import MASK_ITEM
from ecomrec.recommend.models import Recommender

PAD = 0
BUCKET_POOL = 50  # batches per length-sorted pool (`_length_bucketed_batches`)


class SASRecNet(nn.Module):
    def __init__(self, n_items: int, hidden: int = 64, layers: int = 2, heads: int = 2, max_len: int = 50,
                 dropout: float = 0.2):
        super().__init__()
        self.n_items, self.max_len = n_items, max_len
        self.item_embedding = nn.Embedding(n_items + 2, hidden, padding_idx=PAD)  # 1..n items, n+1 = [MASK]
        self.position_embedding = nn.Embedding(max_len, hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=hidden * 2, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.item_embedding.weight, std=hidden ** -0.5)  # logits start near 0: loss ≈ ln(items)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()
        self.register_buffer("causal", torch.triu(torch.full((max_len, max_len), float("-inf")), diagonal=1))

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Hidden state per position (B, L, H) for right-padded item indices (B, L)."""
        length = sequences.shape[1]
        positions = torch.arange(length, device=sequences.device)
        x = self.item_embedding(sequences) * math.sqrt(self.item_embedding.embedding_dim) + self.position_embedding(positions)
        return self.norm(self.encoder(self.dropout(x), mask=self.causal[:length, :length]))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every catalogue item (shared input/output item embeddings)."""
        return hidden @ self.item_embedding.weight[1:self.n_items + 1].T


class SASRec(Recommender):
    """The recommender around `SASRecNet`: fit on time-ordered events (plus optional augmented sequences)."""

    name = "sasrec"

    def __init__(self, items: Sequence, hidden: int = 64, layers: int = 2, heads: int = 2, max_len: int = 50,
                 dropout: float = 0.2, epochs: int = 20, batch_size: int = 128, learning_rate: float = 1e-3,
                 seed: int = C.SEED, device: str = "cpu"):
        super().__init__(items)
        self.config = dict(hidden=hidden, layers=layers, heads=heads, max_len=max_len, dropout=dropout)
        self.epochs, self.batch_size, self.learning_rate = epochs, batch_size, learning_rate
        self.seed, self.device = seed, device

    def _encode(self, sequence: Sequence) -> list[int]:
        if getattr(self, "_codes", None) is None:  # a dict: a pandas lookup per item was most of scoring's Python time
            self._codes = {item: code for code, item in enumerate(self.items.tolist(), start=1)}
            self._codes[MASK_ITEM] = len(self.items) + 1
        return [self._codes[item] for item in sequence]

    def _batch(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs s[:-1] and targets s[1:], cut to the last max_len steps and right-padded to the batch's
        longest sequence (with causal attention, padding after a sequence cannot change its outputs);
        masked targets are ignored."""
        mask_index = len(self.items) + 1
        max_len = min(self.config["max_len"], max(len(seq) for seq in sequences) - 1)
        inputs = torch.full((len(sequences), max_len), PAD, dtype=torch.long)
        targets = torch.full((len(sequences), max_len), -100, dtype=torch.long)
        for row, seq in enumerate(sequences):
            seq = seq[-(max_len + 1):]
            n = len(seq) - 1
            inputs[row, :n] = torch.tensor(seq[:-1])
            target = torch.tensor(seq[1:]) - 1
            target[target == mask_index - 1] = -100
            targets[row, :n] = target
        return inputs, targets

    def fit(self, events: pd.DataFrame, extra_sequences: Sequence[Sequence] | None = None,
            progress: bool = False, valid_targets: dict | None = None, patience: int = 5,
            on_epoch: Callable[[int, float], None] | None = None, k: int = 10,
            max_steps: int | None = None, eval_every: int | None = None) -> "SASRec":
        """Train on each user's history (and `extra_sequences`, e.g. 02's augmented views).

        Training runs in *rounds*: one epoch each, or `eval_every` optimiser steps each when given (a round
        may then cross an epoch boundary). It ends after `epochs` passes over the sequences or, when given,
        `max_steps` optimiser steps, whichever comes first. With `valid_targets` ({user: held-out item}),
        NDCG@k on them is measured after every round; training stops once it has not improved for
        `patience` rounds, and the weights of the best round are restored. `on_epoch(round, valid_ndcg)` is
        called after each round (an Optuna pruner raises from it). Records `history` (epoch = the round,
        steps, passes, loss, seconds[, valid NDCG@k]), `steps_per_epoch`, `steps` (optimiser steps run),
        `epoch_seconds` (training time per pass, evaluations excluded), and with `valid_targets` also
        `best_epoch` (the best round), `best_steps`, `best_valid` and `stopped` ("patience", "epoch budget"
        or "step budget").
        """
        from ecomrec.recommend.evaluate import mean_ndcg

        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        for name, value in (("max_steps", max_steps), ("eval_every", eval_every)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None), got {value}")
        self._prepare(events)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        sequences = [self._encode(s) for s in self.histories.loc[self.users]]
        if extra_sequences is not None:
            sequences += [self._encode(s) for s in extra_sequences]
        sequences = [s for s in sequences if len(s) >= 2]
        if not sequences:
            raise ValueError("no sequence has two items to learn a next-item step from")
        lengths = np.array([min(len(seq), self.config["max_len"] + 1) for seq in sequences])
        self.steps_per_epoch = self._batches_per_epoch(len(sequences))
        total = self.epochs * self.steps_per_epoch if max_steps is None else min(max_steps, self.epochs * self.steps_per_epoch)
        round_steps = eval_every or self.steps_per_epoch
        # the epochs' batch orders are drawn lazily, one epoch after the other, as the rounds consume them
        stream = (batch for _ in range(self.epochs) for batch in self._length_bucketed_batches(lengths, rng))
        self.net = SASRecNet(len(self.items), **self.config).to(self.device)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=self.learning_rate)
        loss_fn = nn.CrossEntropyLoss(ignore_index=-100)
        rows, best_state, self.best_epoch, self.best_steps, self.best_valid = [], None, None, None, -1.0
        self.steps = 0
        self.stopped = "epoch budget" if total == self.epochs * self.steps_per_epoch else "step budget"
        bar = progress_bar(range(1, -(-total // round_steps) + 1), desc="SASRec epochs" if eval_every is None
                           else f"SASRec rounds of {eval_every} steps", disable=not progress)
        for epoch in bar:
            start, loss_sum, count = time.perf_counter(), 0.0, 0
            self.net.train()
            for batch_rows in itertools.islice(stream, min(round_steps, total - self.steps)):
                batch = [sequences[i] for i in batch_rows]
                inputs, targets = self._batch(batch)
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                logits = self.net.logits(self.net(inputs))
                loss = loss_fn(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                loss_sum += loss.detach().item() * len(batch)
                count += len(batch)
                self.steps += 1
            row = {"epoch": epoch, "steps": self.steps, "passes": self.steps / self.steps_per_epoch,
                   "loss": loss_sum / count, "seconds": time.perf_counter() - start}
            rows.append(row)
            if valid_targets:
                score = mean_ndcg(self, valid_targets, k)
                row[f"valid_ndcg@{k}"] = score
                bar.set_postfix(valid=f"{score:.4f}", best=f"{max(score, self.best_valid):.4f}", refresh=False)
                if score > self.best_valid:
                    self.best_valid, self.best_epoch, self.best_steps = score, epoch, self.steps
                    best_state = {name: t.detach().clone() for name, t in self.net.state_dict().items()}
                if on_epoch is not None:
                    self.history = pd.DataFrame(rows)
                    on_epoch(epoch, score)
                if epoch - self.best_epoch >= patience:
                    self.stopped = "patience"
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)  # the best round on valid, not the last one
        self.history = pd.DataFrame(rows)
        self.epoch_seconds = float(self.history["seconds"].sum() / self.history["passes"].iloc[-1])
        return self

    def _batches_per_epoch(self, n: int, pool: int = BUCKET_POOL) -> int:
        """How many batches `_length_bucketed_batches` cuts `n` sequences into (the same every epoch)."""
        chunks = [min(pool * self.batch_size, n - begin) for begin in range(0, n, pool * self.batch_size)]
        return sum(-(-size // self.batch_size) for size in chunks)

    def _length_bucketed_batches(self, lengths: np.ndarray, rng: np.random.Generator, pool: int = BUCKET_POOL) -> list[np.ndarray]:
        """Shuffled batches of similar-length sequences: shuffle, sort each pool of `pool` batches by length,
        cut it into batches, shuffle the batch order. Most histories are short, so padding every batch to
        `max_len` would spend most of the compute on padding."""
        order = rng.permutation(len(lengths))
        batches = []
        for begin in range(0, len(order), pool * self.batch_size):
            chunk = order[begin:begin + pool * self.batch_size]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    @torch.inference_mode()
    def scores(self, users: Sequence, histories: dict | None = None, chunk: int = 256) -> np.ndarray:
        """Next-item scores from each user's training history (or from `histories[user]` when given,
        e.g. the training history plus the validation item when scoring for test)."""
        self._rows(users)
        self.net.eval()
        sequences = [self._encode((histories or {}).get(u, self.histories[u]))[-self.config["max_len"]:] for u in users]
        lengths = np.array([len(seq) for seq in sequences])
        hidden = torch.empty((len(users), self.config["hidden"]), device=self.device)
        # users in groups of similar length, each right-padded to its own longest sequence: with causal attention
        # the padding cannot change a real position's output, and most histories are far shorter than max_len
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), chunk):
            rows = order[start:start + chunk]
            inputs = torch.full((len(rows), int(lengths[rows].max())), PAD, dtype=torch.long)
            for row, user_row in enumerate(rows):
                inputs[row, :lengths[user_row]] = torch.tensor(sequences[user_row])
            out = self.net(inputs.to(self.device))
            hidden[torch.as_tensor(rows, device=self.device)] = out[torch.arange(len(rows)), torch.as_tensor(lengths[rows] - 1)]
        return self.net.logits(hidden).cpu().numpy()
