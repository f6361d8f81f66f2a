"""The packaged SmolLM2-135M-Instruct: offline loading with a reused cache, seeded generation, a LoRA step."""

import copy
import os

import pytest
import torch

from ecomrec.augment import llm

TITLES = ["DEWALT 20-Volt MAX Cordless Drill/Driver Kit", "Behr Premium Plus 1 gal. White Interior Paint",
          "Charlotte Pipe 1/2 in. PVC Sch. 40 Plug", "Moen Chateau Single-Handle Kitchen Faucet in Chrome"]
QUERIES = ["cordless drill", "white interior paint", "1/2 pvc plug", "moen kitchen faucet"]


@pytest.fixture(scope="module")
def smollm2(smoke_dirs):
    # the folder 04b's smoke run caches SmolLM2 in: the suite dequantises the GGUF file once (~20 s), not twice
    cache = smoke_dirs["artifacts"] / "smoke" / "llm" / "smollm2"
    model, tokenizer = llm.load_smollm2(cache)
    return model, tokenizer, cache


def test_loader_is_offline_and_reuses_its_cache(smollm2, monkeypatch):
    model, tokenizer, cache = smollm2
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert (cache / "config.json").is_file()
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    monkeypatch.setattr(llm, "smollm2_folder", lambda: pytest.fail("the saved copy should be loaded, not the GGUF"))
    again, _ = llm.load_smollm2(cache)
    ids = tokenizer("cordless drill", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, again(**ids).logits, atol=1e-4)


def test_chat_template_and_end_token(smollm2):
    _, tokenizer, _ = smollm2
    prompt = llm.chat_prompt(tokenizer).format(title=TITLES[0])
    assert TITLES[0] in prompt and prompt.rstrip().endswith("assistant")
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") != tokenizer.unk_token_id


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_same_seed_gives_the_same_generations(smollm2, dtype):
    model, tokenizer, _ = smollm2
    writer = llm.ChatQueryGenerator(model, tokenizer, name="smollm2-zero-shot", batch_size=4, seed=7, dtype=dtype)
    first, second = writer.generate(TITLES, k=2), writer.generate(TITLES, k=2)
    assert first == second
    assert sum(len(q) for q in first) >= 4  # it writes something for most titles
    assert all(len(query.split()) <= 10 for queries in first for query in queries)


def tiny_llama(model, seed: int = 0):
    """SmolLM2's architecture and vocabulary at a fraction of its width and depth, randomly initialised (seeded):
    the mixed-precision path is the same code, and emulated bf16 (CPUs without native bf16) stays cheap."""
    from transformers import LlamaForCausalLM

    config = copy.deepcopy(model.config)
    config.update({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 16})
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("bf16", [False, True])
def test_a_lora_step_on_four_examples_lowers_the_loss(smollm2, tmp_path, bf16):
    model, tokenizer, _ = smollm2
    # fp32 on the packaged model; bf16 mixed precision on a tiny model of the same architecture
    adapted = llm.add_causal_lora(tiny_llama(model) if bf16 else copy.deepcopy(model), rank=4)
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    assert 0 < trainable < 0.01 * sum(p.numel() for p in adapted.parameters())
    merged, fit = llm.train_query_lora(adapted, tokenizer, TITLES, QUERIES, tmp_path, max_steps=4,
                                       batch_size=4, learning_rate=2e-3, logging_steps=1, bf16=bf16)
    history = fit.history
    assert len(history) == 4
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert all(p.dtype == torch.float32 for p in merged.parameters())  # mixed precision keeps fp32 weights


def test_description_writer_writes_one_seeded_sentence_per_product(smollm2):
    model, tokenizer, _ = smollm2
    writer = llm.ChatDescriptionWriter(model, tokenizer, name="smollm2-description", batch_size=4, seed=3)
    assert "one sentence" in writer.prompt_template and "{title}" in writer.prompt_template
    first = writer.generate(TITLES[:2], k=1)
    assert first == writer.generate(TITLES[:2], k=1)
    sentences = [s for out in first for s in out]
    assert sentences and all(0 < len(s.split()) <= 40 for s in sentences)
