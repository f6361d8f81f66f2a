import pytest
import torch

from ecomrec.augment.attributes import BrandLexicon
from transformers.cache_utils import DynamicLayer

from ecomrec.augment.generators import (GQA_DECODE, LMQueryGenerator, PreallocatedLayer, TemplateGenerator,
                                       clean_generated, distinct, first_line_ended, for_generation, gqa_decode_attention,
                                       preallocated_cache, shared_prefix_length)
from ecomrec.models.selection import BUDGET, PATIENCE
from ecomrec.models.lm import pair_dataset, small_gpt2, small_t5, train_lm, train_wordpiece_tokenizer

PAIRS = [("Simpson Strong-Tie 12-Gauge Angle", "angle bracket"), ("Delta Vero Shower Faucet in Chrome", "shower faucet"),
         ("Hampton Bay 2-Light White Flushmount", "ceiling light"), ("Husky 2-Pocket Framer Pouch", "tool pouch"),
         ("Werner 6 ft. Aluminum Step Ladder", "step ladder"), ("GE 24 in. Gas Wall Oven in Black", "wall oven"),
         ("Toro 22 in. Gas Lawn Mower", "lawn mower"), ("Everbilt 1/2 in. Steel Washer (10-Pack)", "washers")]


@pytest.mark.parametrize("raw, expected", [
    ("  Angle Bracket  \nsecond line", "angle bracket"),
    ('"cordless drill!"', "cordless drill"),
    ("one two three four five six seven eight nine ten eleven twelve", "one two three four five six seven eight nine ten"),
    ("", ""), ("\n\n", ""), ("--- ", ""),
])
def test_clean_generated(raw, expected):
    assert clean_generated(raw) == expected


def test_distinct_keeps_order_and_drops_empty():
    assert distinct(["a", "", "b", "a", "c"], 2) == ["a", "b"]


def test_templates_fill_parsed_attributes():
    gen = TemplateGenerator(BrandLexicon(known={"john deere"}))
    [queries] = gen.generate(["John Deere 46 in. x 44 in. Black Riding Mower Cover"], k=4)
    assert queries == ["riding mower cover", "john deere riding mower cover", "black riding mower cover",
                       "46 in. riding mower cover"]
    assert gen.generate(["Thing"], k=3) == [["thing"]]


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece_tokenizer([t for pair in PAIRS for t in pair] * 5, vocab_size=200)


def test_pair_encoding_masks_the_source(tokenizer):
    ds = pair_dataset(tokenizer, ["Toro Lawn Mower"], ["lawn mower"])
    ids, labels = ds[0]["input_ids"], ds[0]["labels"]
    sep = tokenizer.sep_token_id
    first_sep = ids.index(sep)
    assert all(label == -100 for label in labels[:first_sep + 1])
    assert labels[first_sep + 1:] == ids[first_sep + 1:] and labels[-1] == sep  # learns to stop


def tiny_model(kind, tokenizer):
    torch.manual_seed(0)
    if kind == "t5":
        return small_t5(tokenizer, d_model=32, layers=1, heads=2, d_ff=64)
    return small_gpt2(tokenizer, n_layer=1, n_embd=32, n_head=2, n_positions=64)


def test_seq2seq_pairs_label_the_target_and_stop(tokenizer):
    ds = pair_dataset(tokenizer, ["Toro Lawn Mower"], ["lawn mower"], seq2seq=True)
    assert ds[0]["input_ids"][0] == tokenizer.cls_token_id
    assert tokenizer.decode(ds[0]["labels"][:-1]) == "lawn mower" and ds[0]["labels"][-1] == tokenizer.sep_token_id


@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_generator_loss_falls_on_tiny_data(tokenizer, tmp_path, kind):
    model = tiny_model(kind, tokenizer)
    data = pair_dataset(tokenizer, [p[0] for p in PAIRS], [p[1] for p in PAIRS], seq2seq=kind == "t5")
    result = train_lm(model, tokenizer, data, data, tmp_path, max_steps=40, batch_size=8,
                             learning_rate=5e-3, logging_steps=10)
    assert result.eval_loss_after < 0.7 * result.eval_loss_before
    assert result.history["loss"].iloc[-1] < result.history["loss"].iloc[0]


def test_bf16_training_runs_under_autocast_and_still_learns(tokenizer, tmp_path):
    import torch

    model = tiny_model("t5", tokenizer)
    seen = []
    inner = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))  # inside the forward the Trainer autocasts
    inner.register_forward_hook(lambda module, args, out: seen.append(torch.is_autocast_enabled("cpu")))
    data = pair_dataset(tokenizer, [p[0] for p in PAIRS], [p[1] for p in PAIRS], seq2seq=True)
    result = train_lm(model, tokenizer, data, data, tmp_path, max_steps=40, batch_size=8, learning_rate=5e-3,
                      logging_steps=10, bf16=True)
    assert seen and all(seen)  # every forward, training and held-out, under bf16 autocast
    assert next(model.parameters()).dtype == torch.float32  # mixed precision: the weights stay fp32
    assert result.eval_loss_after < 0.7 * result.eval_loss_before


def test_heldout_selection_keeps_the_best_step_and_stops_on_patience(tokenizer, tmp_path):
    data = pair_dataset(tokenizer, [p[0] for p in PAIRS], [p[1] for p in PAIRS], seq2seq=True)
    result = train_lm(tiny_model("t5", tokenizer), tokenizer, data, data, tmp_path, max_steps=40, batch_size=8,
                      learning_rate=5e-3, logging_steps=10, eval_steps=10, patience=2, min_delta=0.0)
    losses = result.valid_history.set_index("step")["eval_loss"]
    assert losses.index[0] == 0 and losses.iloc[0] == pytest.approx(result.eval_loss_before)
    assert result.best_step == losses.idxmin() > 0 and result.eval_loss_after == pytest.approx(losses.min(), rel=1e-4)
    # no evaluation can gain 100 nats: training stops after `patience` evaluations and step 0's weights come back
    model = tiny_model("t5", tokenizer)
    stuck = train_lm(model, tokenizer, data, data, tmp_path, max_steps=40, batch_size=8, learning_rate=5e-3,
                     logging_steps=10, eval_steps=10, patience=2, min_delta=100.0)
    assert stuck.stopped == PATIENCE and stuck.steps == 20 and stuck.best_step == 0
    assert stuck.eval_loss_after == pytest.approx(stuck.eval_loss_before, rel=1e-5)
    assert train_lm(tiny_model("t5", tokenizer), tokenizer, data, data, tmp_path, max_steps=10, batch_size=8,
                    logging_steps=5).stopped == BUDGET  # no held-out selection: the budget ends it


@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_hf_backend_loads_tiny_local_model_and_is_seeded(tokenizer, tmp_path, kind):
    tiny = LMQueryGenerator(tiny_model(kind, tokenizer), tokenizer, name="tiny")
    path = tiny.save(tmp_path / "tiny")
    loaded = LMQueryGenerator.from_pretrained(path, seed=7, max_new_tokens=6)
    assert loaded.name == "tiny" and loaded.seq2seq == (kind == "t5")
    titles = [p[0] for p in PAIRS]
    first = loaded.generate(titles, k=3)
    assert len(first) == len(titles) and all(1 <= len(q) <= 3 for q in first)
    assert all(len(query.split()) <= 10 for queries in first for query in queries)
    assert LMQueryGenerator.from_pretrained(path, seed=7, max_new_tokens=6).generate(titles, k=3) == first
    assert LMQueryGenerator.from_pretrained(path, seed=8, max_new_tokens=6).generate(titles, k=3) != first
    beams = LMQueryGenerator.from_pretrained(path, decoding="beam", max_new_tokens=6).generate(titles[:2], k=2)
    assert len(beams) == 2


def test_shared_prefix_length():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert shared_prefix_length([[1, 2], [1, 2, 3]]) == 2
    assert shared_prefix_length([[7, 2], [1, 2]]) == 0
    assert shared_prefix_length([[4, 5, 6]]) == 3 and shared_prefix_length([]) == 0


@pytest.fixture(scope="module")
def trained_gpt2(tokenizer, tmp_path_factory):
    """The tiny decoder after 100 steps on PAIRS (an untrained one writes nothing but special tokens)."""
    model = tiny_model("gpt2", tokenizer)
    data = pair_dataset(tokenizer, [p[0] for p in PAIRS], [p[1] for p in PAIRS])
    train_lm(model, tokenizer, data, data, tmp_path_factory.mktemp("gpt2"), max_steps=100, batch_size=8,
             learning_rate=1e-2, logging_steps=50)
    return model.eval()


def test_cached_prefix_and_early_exit_decode_like_plain_greedy_generation(tokenizer, trained_gpt2):
    # top-k 1 makes sampling greedy: the shared-prefix cache, the padding between prefix and title and
    # rows leaving the batch at their end token must give exactly what `model.generate` gives on the
    # whole left-padded prompts
    model = trained_gpt2
    gen = LMQueryGenerator(model, tokenizer, name="tiny", prompt_template="toro lawn mower {title}",
                           max_new_tokens=8, top_k=1, repetition_penalty=1.0, oversample=1)
    prompts = [gen.prompt_template.format(title=p[0]) for p in PAIRS]
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True)

    def plain_greedy(**kwargs):
        return model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], do_sample=False,
                              max_new_tokens=8, pad_token_id=tokenizer.pad_token_id, **kwargs)[:, enc["input_ids"].shape[1]:]

    with torch.inference_mode():
        # the end token: one that the greedy continuations write first at different steps, so that rows leave
        # the batch early at different steps whatever this short training run learnt
        free = plain_greedy(min_new_tokens=8, eos_token_id=gen.eos_token_id)

        def first_steps(token):
            return {int(row.tolist().index(token)) if token in row.tolist() else 8 for row in free}

        candidates = [t for t in set(free.flatten().tolist()) if t != tokenizer.pad_token_id]
        gen.eos_token_id = max(candidates, key=lambda t: (len(first_steps(t)), -t))
        assert len(first_steps(gen.eos_token_id)) > 1  # rows end at different steps, so some leave the batch early
        ours = gen._sample(prompts, n_return=1)
        plain = plain_greedy(eos_token_id=gen.eos_token_id)
    ids = tokenizer(prompts)["input_ids"]
    assert shared_prefix_length(ids) >= 4 and len({len(row) for row in ids}) > 1  # a shared prefix, ragged tails
    assert torch.equal(ours, plain)


def test_a_settled_row_stops_with_the_text_it_had(tokenizer, trained_gpt2):
    # greedy decoding; a writer whose replies are settled after their second word must return, for each
    # row, exactly the first tokens of its unrestricted continuation (and stop there)
    model = trained_gpt2
    free = LMQueryGenerator(model, tokenizer, name="free", max_new_tokens=6, top_k=1, repetition_penalty=1.0, oversample=1)
    free.eos_token_id = -1  # no end token: every row writes 6 tokens

    class TwoTokens(LMQueryGenerator):
        def settled(self, text):
            return len(text.split()) >= 2

        def settle_trigger(self, piece):
            return True

    short = TwoTokens(model, tokenizer, name="short", max_new_tokens=6, top_k=1, repetition_penalty=1.0, oversample=1)
    short.eos_token_id = -1
    prompts = [p[0] for p in PAIRS]
    with torch.inference_mode():
        full, cut = free._sample(prompts, 1), short._sample(prompts, 1)

    def settles_after(row):  # tokens written when the reply first has two words (or all of them)
        return next((i + 1 for i in range(len(row)) if short.settled(tokenizer.decode(row[:i + 1], skip_special_tokens=True))),
                    len(row))

    cuts = [settles_after(row) for row in full.tolist()]
    assert full.shape[1] == 6 and min(cuts) < 6 and cut.shape[1] == max(cuts)  # some rows settle early
    for row_full, row_cut, n in zip(full.tolist(), cut.tolist(), cuts):
        assert row_cut[:n] == row_full[:n] and set(row_cut[n:]) <= {tokenizer.pad_token_id}


@pytest.mark.parametrize("text, ended", [
    ("abc", False), ("abc\n", True), ("  \n abc\nmore", True), ("\n\n", False), ("", False), ("abc\rdef", False),
])
def test_first_line_ended(text, ended):
    assert first_line_ended(text) == ended
    if ended:  # then no continuation changes the parsed query
        assert all(clean_generated(text + more) == clean_generated(text) for more in ("", "x", " y z", "\nw"))


def test_preallocated_layer_matches_a_concatenating_layer_without_reallocating():
    torch.manual_seed(0)
    ours, plain = PreallocatedLayer(capacity=6), DynamicLayer()
    chunks = [torch.randn(2, 3, n, 4) for n in (3, 1, 1)]
    for i, chunk in enumerate(chunks):
        got, want = ours.update(chunk, chunk + 1), plain.update(chunk, chunk + 1)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        if i == 0:
            buffer = ours.keys.data_ptr()
    assert ours.keys.data_ptr() == buffer and ours.get_seq_length() == plain.get_seq_length() == 5  # written in place
    for layer in (ours, plain):
        layer.batch_repeat_interleave(2)
        layer.batch_select_indices(torch.tensor([3, 0]))
    assert torch.equal(ours.keys, plain.keys) and torch.equal(ours.values, plain.values)
    extra = torch.randn(2, 3, 4, 4)  # past the capacity: the buffers grow, the contents stay right
    assert torch.equal(ours.update(extra, extra)[0], plain.update(extra, extra)[0]) and ours.get_seq_length() == 9


def test_a_full_attention_decoder_gets_a_preallocated_cache(tokenizer):
    cache = preallocated_cache(tiny_model("gpt2", tokenizer), 16)
    assert cache.layers and all(isinstance(layer, PreallocatedLayer) for layer in cache.layers)


def reference_attention(query, key, value, readable):
    """fp32 attention of one query position over `key`/`value` (grouped heads repeated), `readable`: bool mask."""
    groups = query.shape[1] // key.shape[1]
    key, value = (t.float().repeat_interleave(groups, dim=1) for t in (key, value))
    out = torch.nn.functional.scaled_dot_product_attention(query.float(), key, value, attn_mask=readable)
    return out.transpose(1, 2)


@pytest.mark.parametrize("masked", [True, False])
def test_gqa_decode_attention_reads_only_written_slots_and_matches_sdpa(masked):
    torch.manual_seed(0)
    layer = PreallocatedLayer(capacity=12)  # 7 slots written, 5 left unwritten (zeros) that must not be read
    key, value = (torch.randn(3, 2, 7, 8, dtype=torch.bfloat16) for _ in range(2))
    key, value = layer.update(key, value)
    assert key.preallocated[0].shape[2] == 12
    query = torch.randn(3, 6, 1, 8, dtype=torch.bfloat16)  # 6 query heads share 2 key/value heads
    readable = torch.ones(3, 1, 1, 7, dtype=torch.bool)
    readable[0, ..., :3] = False  # a left-padded row
    mask = readable if masked else None
    got, _ = gqa_decode_attention(None, query, key, value, mask)
    want = reference_attention(query, key, value, readable if masked else None)
    assert got.shape == (3, 1, 6, 8) and got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), want, atol=3e-2), (got.float() - want).abs().max()
    unmasked_first_row = reference_attention(query, key, value, None)[0]
    assert masked == (not torch.allclose(got[0].float(), unmasked_first_row, atol=3e-2))  # the padding mattered


def tiny_llama(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id)
    return LlamaForCausalLM(config).eval()


def test_for_generation_casts_a_copy_and_leaves_the_model_alone(tokenizer):
    model = tiny_llama(tokenizer)
    assert for_generation(model, torch.float32) is model and model.config._attn_implementation == "sdpa"
    half = for_generation(model, torch.bfloat16)
    assert half is not model and half.config._attn_implementation == GQA_DECODE
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters()) and model.config._attn_implementation == "sdpa"
    assert for_generation(half, torch.bfloat16) is half


def test_bfloat16_decoding_with_gqa_decode_follows_sdpa(tokenizer):
    model = tiny_llama(tokenizer)
    ours = for_generation(model, torch.bfloat16)
    theirs = for_generation(model, torch.bfloat16)
    theirs.set_attn_implementation("sdpa")
    ids = torch.tensor([[0, 0, 5, 9, 12], [7, 8, 9, 10, 11]])  # the first row left-padded
    mask = torch.tensor([[0, 0, 1, 1, 1], [1] * 5])
    logits = {}
    with torch.inference_mode():
        for name, m in (("ours", ours), ("sdpa", theirs)):
            cache, step_mask, rows = preallocated_cache(m, 16), mask, []
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = m(input_ids=ids, attention_mask=step_mask, position_ids=positions, past_key_values=cache, use_cache=True)
            position = positions[:, -1:]
            for token in (13, 14, 15):
                step_mask, position = torch.cat([step_mask, torch.ones_like(step_mask[:, :1])], 1), position + 1
                out = m(input_ids=torch.full((2, 1), token), attention_mask=step_mask, position_ids=position,
                        past_key_values=cache, use_cache=True)
                rows.append(out.logits[:, -1].float())
            logits[name] = torch.stack(rows)
    scale = logits["sdpa"].abs().max()
    assert (logits["ours"] - logits["sdpa"]).abs().max() < 0.02 * scale


def test_a_bfloat16_writer_is_seeded_and_parses(tokenizer):
    first, second = (LMQueryGenerator(tiny_llama(tokenizer), tokenizer, name="tiny", seed=3, max_new_tokens=5,
                                      dtype=torch.bfloat16) for _ in range(2))
    titles = [p[0] for p in PAIRS[:3]]
    out = first.generate(titles, 2)
    assert out == second.generate(titles, 2) and len(out) == 3 and all(1 <= len(q) <= 2 for q in out)
    assert next(first.model.parameters()).dtype == torch.bfloat16


def test_bad_decoding_rejected(tokenizer):
    with pytest.raises(ValueError, match="decoding"):
        LMQueryGenerator(small_gpt2(tokenizer, n_layer=1, n_embd=16, n_head=2), tokenizer, decoding="greedy")


def test_wordpiece_ids_do_not_depend_on_hash_order():
    # the trainer numbers pieces in hash-map order (and breaks ties between equally frequent merges the
    # same way): ids must be a function of the learned piece set alone — specials first, then sorted
    texts = [f"{brand} {kind} {size} in." for brand in ("ryobi", "dewalt", "milwaukee", "makita", "bosch")
             for kind in ("drill", "driver", "saw", "sander", "grinder") for size in range(1, 9)]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for _ in range(3):
        vocab = train_wordpiece_tokenizer(texts, vocab_size=120).get_vocab()
        by_id = sorted(vocab, key=vocab.get)
        assert by_id[:5] == specials and by_id[5:] == sorted(by_id[5:])
    tok = train_wordpiece_tokenizer(texts, vocab_size=120)
    assert tok.decode(tok("ryobi drill")["input_ids"], skip_special_tokens=True) == "ryobi drill"


def test_the_same_texts_give_the_same_wordpiece_vocabulary_in_every_process():
    # many equally frequent merges: the tokenizers trainer alone gives a different vocabulary in almost every
    # process (huggingface/tokenizers#1794); train_wordpiece_tokenizer must not
    import subprocess
    import sys

    code = ("import hashlib, random\n"
            "from ecomrec.models.lm import train_wordpiece_tokenizer\n"
            "random.seed(0)\n"
            "texts = [' '.join(''.join(random.choice('abcdefghijkl') for _ in range(random.randint(3, 9)))"
            " for _ in range(6)) for _ in range(400)]\n"
            "vocab = sorted(train_wordpiece_tokenizer(texts, vocab_size=600).get_vocab().items())\n"
            "print(len(vocab), hashlib.md5(str(vocab).encode()).hexdigest())\n")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(4)}
    assert len(runs) == 1 and runs.pop().startswith("600 "), runs
