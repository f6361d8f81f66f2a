"""Query generators (doc2query): attribute templates, and generative language models — a small one trained
here from scratch, or any local Hugging Face model — behind one interface: `generate(titles, k) -> k queries each`."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Protocol, Sequence

import torch
from ecomrec.progress import progress as progress_bar
from transformers import AttentionInterface
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ecomrec.augment.attributes import BrandLexicon, parse_attributes
from ecomrec import config as C
from ecomrec.config import native_bf16

CONFIG_NAME = "ecomrec_generator.json"
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")


class QueryGenerator(Protocol):
    """Anything that writes up to `k` distinct search queries for each product title."""

    name: str

    def generate(self, titles: Sequence[str], k: int) -> list[list[str]]: ...


def clean_generated(text: str, max_words: int = 10) -> str:
    """Parse raw model output into one query: first line, lower-case, no edge punctuation, ≤ max_words."""
    line = text.strip().split("\n", 1)[0] if text.strip() else ""
    line = _EDGE_PUNCT.sub("", " ".join(line.lower().split()))
    return " ".join(line.split()[:max_words])


def distinct(candidates: Sequence[str], k: int) -> list[str]:
    """The first `k` distinct non-empty strings, in order."""
    seen: dict[str, None] = {}
    for query in candidates:
        if query and query not in seen:
            seen[query] = None
            if len(seen) == k:
                break
    return list(seen)


class TemplateGenerator:
    """Non-neural baseline: fill query templates with attributes parsed from the title."""

    name = "templates"
    PATTERNS = ("{product_type}", "{brand} {product_type}", "{colour} {product_type}", "{size} {product_type}",
                "{count} pack {product_type}", "{brand}")

    def __init__(self, brands: BrandLexicon | None = None):
        self.brands = brands

    def generate(self, titles: Sequence[str], k: int) -> list[list[str]]:
        out = []
        for title in titles:
            attrs = parse_attributes(title, self.brands).__dict__
            filled = [p.format(**attrs) for p in self.PATTERNS if all(attrs[f] for f in re.findall(r"{(\w+)}", p))]
            out.append(distinct([clean_generated(q) for q in filled], k))
        return out


class LMQueryGenerator:
    """Sample or beam-decode queries from a generative LM given the title: an encoder-decoder (T5-style,
    the title is the encoder input) or a decoder-only model (the prompt is continued).

    The prompt is `prompt_template.format(title=...)`. For the from-scratch models it is the bare title;
    for an instruction-tuned or other pretrained model pass a template such as
    `"Product: {title}\nSearch query:"`. Sampling is top-k (50) then nucleus (top-p) with a repetition
    penalty; the title is encoded once and shared by its `k × oversample` samples. `dtype` (e.g.
    `generation_dtype(device)`) runs a copy of the model in that precision (`for_generation`); None keeps
    the model as it is.
    """

    def __init__(self, model, tokenizer, name: str = "lm", prompt_template: str = "{title}",
                 decoding: str = "sample", max_new_tokens: int = 12, batch_size: int = 64, oversample: int = 2,
                 temperature: float = 1.0, top_k: int = 50, top_p: float = 0.95, repetition_penalty: float = 1.3,
                 seed: int = C.SEED, device: str = "cpu", dtype: torch.dtype | None = None):
        if decoding not in ("sample", "beam"):
            raise ValueError(f"decoding must be 'sample' or 'beam', got {decoding!r}")
        self.model = (model if dtype is None else for_generation(model, dtype)).to(device).eval()
        self.tokenizer = tokenizer
        self.seq2seq = bool(model.config.is_encoder_decoder)
        self.name, self.prompt_template, self.decoding = name, prompt_template, decoding
        self.max_new_tokens, self.batch_size, self.oversample = max_new_tokens, batch_size, oversample
        self.temperature, self.top_k, self.top_p, self.repetition_penalty = temperature, top_k, top_p, repetition_penalty
        self.seed, self.device = seed, device
        self.max_prompt_length = 96  # tokens; longer prompts are truncated
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos_token_id = model.config.eos_token_id

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "LMQueryGenerator":
        """Load a generative LM (causal or seq2seq) and its tokenizer from a local folder, or a hub name you pass."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        settings = {}
        if (Path(path) / CONFIG_NAME).is_file():
            settings = json.loads((Path(path) / CONFIG_NAME).read_text())
        settings.update(kwargs)
        auto = AutoModelForSeq2SeqLM if AutoConfig.from_pretrained(path).is_encoder_decoder else AutoModelForCausalLM
        return cls(auto.from_pretrained(path), AutoTokenizer.from_pretrained(path), **settings)

    def save(self, path: str | Path) -> Path:
        """Save model, tokenizer and the prompt template, for `from_pretrained` (atomically: the folder appears
        complete or not at all)."""
        from ecomrec.storage import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            (tmp / CONFIG_NAME).write_text(json.dumps({"name": self.name, "prompt_template": self.prompt_template}))
        return path

    def clean(self, text: str) -> str:
        """One query out of one decoded continuation."""
        return clean_generated(text)

    def settled(self, text: str) -> bool:
        """Whether `clean` of a continuation that begins with `text` is already fixed, whatever follows:
        here, once its first non-empty line has ended (a row that is settled stops writing)."""
        return first_line_ended(text)

    def settle_trigger(self, piece: str) -> bool:
        """Whether writing a token that decodes to `piece` can make a text `settled` (only then is it checked)."""
        return "\n" in piece

    def _settle_triggers(self, vocab_size: int) -> torch.Tensor:
        """`settle_trigger` of every token id, as a boolean tensor (computed once per generator)."""
        if getattr(self, "_triggers", None) is None or len(self._triggers) != vocab_size:
            pieces = self.tokenizer.batch_decode([[i] for i in range(vocab_size)])
            self._triggers = torch.tensor([self.settle_trigger(p) for p in pieces], dtype=torch.bool, device=self.device)
        return self._triggers

    @torch.inference_mode()
    def generate(self, titles: Sequence[str], k: int, progress: bool = False) -> list[list[str]]:
        # a decoder-only model continues from the right edge, so its prompts are padded on the left
        self.tokenizer.padding_side = "right" if self.seq2seq else "left"
        n_return = k * self.oversample if self.decoding == "sample" else k
        out: list[list[str]] = []
        starts = range(0, len(titles), self.batch_size)
        bar = progress_bar(starts, desc=f"generate[{self.name}]", disable=not progress)
        for batch_index, start in enumerate(bar):
            batch = [self.prompt_template.format(title=t) for t in titles[start:start + self.batch_size]]
            torch.manual_seed(self.seed + batch_index)  # same seed → same queries, batch by batch
            if self.decoding == "sample":
                new_tokens = self._sample(batch, n_return)
            else:
                enc = self.tokenizer(batch, return_tensors="pt", padding=True, truncation=True,
                                     max_length=self.max_prompt_length).to(self.device)
                tokens = self.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                             max_new_tokens=self.max_new_tokens, num_return_sequences=n_return,
                                             num_beams=max(k, 2), do_sample=False, no_repeat_ngram_size=2,
                                             repetition_penalty=self.repetition_penalty, eos_token_id=self.eos_token_id,
                                             pad_token_id=self.tokenizer.pad_token_id)
                new_tokens = tokens if self.seq2seq else tokens[:, enc["input_ids"].shape[1]:]
            texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for i in range(len(batch)):
                out.append(distinct([self.clean(t) for t in texts[i * n_return:(i + 1) * n_return]], k))
        return out

    def _prefill_causal(self, prompts: list[str]):
        """Encode a batch of decoder-only prompts; returns (last-position logits, cache, attention mask, positions).

        Prompts built from one template share their first tokens (a chat model's system turn, the
        instruction, few-shot examples): that shared prefix is encoded once, at batch size 1, and its cache
        repeated; only each prompt's own tail (the title and what follows) is encoded per row. The tails are
        padded on their left, so the padding sits between prefix and tail, masked out, with positions that
        skip it. Only the last position's logits are computed (the vocabulary projection over every prompt
        token would cost more than the rest of the model). The cache is allocated once, for the prompt and
        every token still to be written (`preallocated_cache`).
        """
        ids = self.tokenizer(prompts, truncation=True, max_length=self.max_prompt_length)["input_ids"]
        shared = min(shared_prefix_length(ids), min(map(len, ids)) - 1)  # every row keeps ≥ 1 token of its own
        tails = [row[shared:] for row in ids]
        width = max(map(len, tails))
        cache = preallocated_cache(self.model, shared + width + self.max_new_tokens)
        if shared > 0:
            prefix = torch.tensor([ids[0][:shared]], device=self.device)
            cache = self.model(input_ids=prefix, past_key_values=cache, use_cache=True, logits_to_keep=1).past_key_values
            cache.batch_repeat_interleave(len(ids))
        input_ids = torch.tensor([[self.tokenizer.pad_token_id] * (width - len(t)) + t for t in tails], device=self.device)
        tail_mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in tails], device=self.device)
        mask = torch.cat([torch.ones(len(ids), shared, dtype=tail_mask.dtype, device=self.device), tail_mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # the last position as an index tensor, not `logits_to_keep=1`: a slice leaves a strided (rows, 1, hidden)
        # view, which the vocabulary projection of a model with frozen weights (requires_grad False, as after
        # LoRA merging) runs as a batched product against the projection matrix copied once per row — 7 s per
        # batch of 64 in bf16; an index makes a contiguous copy of the last hidden states instead
        step = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions[:, shared:],
                          past_key_values=cache, use_cache=True, logits_to_keep=torch.tensor([width - 1], device=self.device))
        return step.logits[:, -1, :].float(), step.past_key_values, mask, positions[:, -1:]

    def _sample(self, prompts: list[str], n_return: int) -> torch.Tensor:
        """`n_return` sampled continuations per prompt, as a (len(prompts) × n_return, steps) tensor of token
        ids (padded after the end token); each prompt is encoded once and its states repeated.

        (`model.generate` would encode each prompt `n_return` times for a decoder-only model, and samples
        over the full vocabulary, which dominates its run time for small models.) A row that has written
        its end token, or whose text is `settled` (what `clean` keeps of it can no longer change), stops
        writing and leaves the batch, so short queries do not wait for the longest one.
        """
        encoder_outputs = None
        if self.seq2seq:
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_prompt_length).to(self.device)
            hidden = self.model.get_encoder()(**enc).last_hidden_state
            encoder_outputs = (hidden.repeat_interleave(n_return, 0),)
            mask = enc["attention_mask"].repeat_interleave(n_return, 0)
            start = torch.full((len(mask), 1), self.model.config.decoder_start_token_id, device=self.device)
            step = self.model(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=start, use_cache=True)
            logits, cache, position = step.logits[:, -1, :].float(), step.past_key_values, None
        else:
            logits, cache, mask, position = self._prefill_causal(prompts)
            cache.batch_repeat_interleave(n_return)
            logits, mask, position = (t.repeat_interleave(n_return, 0) for t in (logits, mask, position))
        rows = len(logits)
        tokens = torch.full((rows, self.max_new_tokens), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
        active = torch.arange(rows, device=self.device)  # rows still writing
        seen = torch.zeros_like(logits, dtype=torch.bool)
        triggers = self._settle_triggers(logits.shape[-1])
        for t in range(self.max_new_tokens):
            logits = torch.where(seen, torch.where(logits > 0, logits / self.repetition_penalty,
                                                   logits * self.repetition_penalty), logits)
            token = _sample_token(logits, self.temperature, self.top_k, self.top_p)
            tokens[active, t] = token
            seen[torch.arange(len(token)), token] = True
            going = token != self.eos_token_id
            check = (going & triggers[token]).nonzero().squeeze(-1)
            if len(check) and t < self.max_new_tokens - 1:  # rows whose text is already settled stop too
                texts = self.tokenizer.batch_decode(tokens[active[check], :t + 1], skip_special_tokens=True)
                going[check[torch.tensor([self.settled(text) for text in texts], dtype=torch.bool)]] = False
            if not going.any() or t == self.max_new_tokens - 1:
                break
            if not going.all():  # finished rows leave the batch
                keep = going.nonzero().squeeze(-1)
                active, token, seen, mask = active[keep], token[keep], seen[keep], mask[keep]
                cache.batch_select_indices(keep)
                if self.seq2seq:
                    encoder_outputs = (encoder_outputs[0][keep],)
                else:
                    position = position[keep]
            if self.seq2seq:
                step = self.model(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=token[:, None],
                                  past_key_values=cache, use_cache=True)
            else:
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                position = position + 1
                step = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=position,
                                  past_key_values=cache, use_cache=True)
            cache, logits = step.past_key_values, step.logits[:, -1, :].float()  # sample in fp32 whatever the model's dtype
        return tokens[:, :t + 1]


LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # where str.splitlines breaks


def first_line_ended(text: str, breaks: str = "\n") -> bool:
    """Whether `text` holds one of `breaks` after its first non-blank line, so that line can no longer change
    whatever is written after it. `breaks` defaults to the newline alone (`clean_generated` splits there);
    `LINE_BREAKS` for a parser that uses `str.splitlines`."""
    cls = re.escape(breaks)
    return re.match(rf"\s*\S[^{cls}]*[{cls}]", text) is not None


class PreallocatedLayer(DynamicLayer):
    """A decoder layer's key/value cache that writes each step's keys and values into buffers allocated once,
    with room for `capacity` positions, instead of concatenating (`DynamicLayer` copies the whole cache at every
    step, and on a CPU each fresh multi-megabyte copy also costs page faults). `keys` / `values` are views of
    the filled part; `keys.preallocated` is the pair of whole buffers, whose unwritten slots are zeros. Past
    `capacity` the buffers grow (doubling), so a wrong guess costs time, never results."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            shape = (*key_states.shape[:2], max(self.capacity, key_states.shape[-2]), key_states.shape[-1])
            self._keys = key_states.new_zeros(shape)
            self._values = value_states.new_zeros((*shape[:3], value_states.shape[-1]))
        n = key_states.shape[-2]
        if self.length + n > self._keys.shape[-2]:
            room = max(2 * self._keys.shape[-2], self.length + n)
            self._keys, self._values = (torch.cat([b, b.new_zeros((*b.shape[:2], room - b.shape[2], b.shape[3]))], dim=2)
                                        for b in (self._keys, self._values))
        self._keys[:, :, self.length:self.length + n] = key_states
        self._values[:, :, self.length:self.length + n] = value_states
        self.length += n
        self._views()
        return self.keys, self.values

    def _views(self) -> None:
        self.keys, self.values = self._keys[:, :, :self.length], self._values[:, :, :self.length]
        self.keys.preallocated = (self._keys, self._values)  # for `gqa_decode_attention`

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self._views()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("PreallocatedLayer is for left-to-right decoding; it does not crop")

    def reset(self) -> None:
        self.length = 0
        super().reset()


def preallocated_cache(model, capacity: int) -> DynamicCache:
    """A `DynamicCache` for `model` whose layers are `PreallocatedLayer`s with room for `capacity` positions —
    where every layer of the model's own cache would be a plain `DynamicLayer` (full attention); otherwise
    (sliding windows, linear attention) the model's own `DynamicCache`."""
    cache = DynamicCache(config=model.config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [PreallocatedLayer(capacity) for _ in cache.layers]
    return cache


GQA_DECODE = "ecomrec_gqa_decode"


def gqa_decode_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                         **kwargs) -> tuple[torch.Tensor, None]:
    """A transformers attention function (registered as `GQA_DECODE`): PyTorch's SDPA, except for one-token
    decoding steps of a half-precision model, where SDPA's CPU kernel is slow — for 64 rows × 200 cached
    positions of SmolLM2 in bfloat16 on 2 CPU cores, 2.0-2.3 ms per layer with a padding mask and 10 ms
    without, against 1.2 ms here (and 2.6 ms for SDPA in fp32).

    There the query heads that share a key/value head (grouped-query attention) are stacked as rows of one
    small matrix product against that head's keys, with no copy of the cache per query head; the softmax
    runs in fp32. Keys and values from a `PreallocatedLayer` are read as its whole buffers (contiguous,
    so the matrix products copy nothing; the unwritten slots are zeros and masked out). Same result as
    SDPA up to rounding (a test compares them).
    """
    if query.shape[2] != 1 or query.dtype == torch.float32 or dropout or kwargs.get("softcap") is not None \
            or kwargs.get("s_aux") is not None or (attention_mask is not None and attention_mask.dtype != torch.bool):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    batch, heads, _, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    key, value = getattr(key, "preallocated", (key, value))
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)  # query head h reads key/value head h // groups
    scores = torch.matmul(grouped, key.transpose(-1, -2)) * (dim ** -0.5 if scaling is None else scaling)
    # (batch, 1, 1, keys): True where a key may be read; never a slot past what the cache has written
    readable = torch.ones((batch, 1, 1, length), dtype=torch.bool, device=query.device) if attention_mask is None \
        else attention_mask[..., -length:]
    if key.shape[2] > length:
        readable = torch.nn.functional.pad(readable, (0, key.shape[2] - length), value=False)
    scores = scores.masked_fill(~readable, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(probs, value)  # (batch, kv_heads, groups, dim)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(GQA_DECODE, gqa_decode_attention)
AttentionMaskInterface.register(GQA_DECODE, sdpa_mask)


def generation_dtype(device: str) -> torch.dtype:
    """The precision to generate in on `device`: bfloat16 where the hardware multiplies in it natively
    (`native_bf16`), else float32."""
    return torch.bfloat16 if native_bf16(device) else torch.float32


def for_generation(model, dtype: torch.dtype):
    """`model` ready to decode in `dtype`: the model itself if its floating-point weights already are in that
    dtype, else a cast copy (the original stays as it is, for training or int8 quantization). A decoder-only
    model in half precision gets `gqa_decode_attention`."""
    weights = [p for p in model.parameters() if p.is_floating_point()]
    ready = model if all(p.dtype == dtype for p in weights) else copy.deepcopy(model).to(dtype)
    if dtype != torch.float32 and not ready.config.is_encoder_decoder:
        ready.set_attn_implementation(GQA_DECODE)
    return ready


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix that every token-id list in `rows` begins with."""
    if not rows:
        return 0
    first, n = rows[0], min(map(len, rows))
    for i in range(n):
        if any(row[i] != first[i] for row in rows):
            return i
    return n


def _sample_token(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Draw one token per row from the temperature-scaled top-k distribution, cut to nucleus `top_p`."""
    values, indices = torch.topk(logits / temperature, k=min(top_k, logits.shape[-1]), dim=-1)
    probs = torch.softmax(values, dim=-1)
    outside = probs.cumsum(-1) - probs > top_p  # tokens after the nucleus is already full
    probs = probs.masked_fill(outside, 0.0)
    choice = torch.multinomial(probs, 1)
    return indices.gather(-1, choice).squeeze(-1)
