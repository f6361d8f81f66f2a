import numpy as np
import pytest
import torch

from ecomrec.models.embedding_cache import EmbeddingCache, model_fingerprint, texts_fingerprint
from ecomrec.models import search
from ecomrec.models.search import encode

TEXTS = ["cordless drill", "1/2 in. copper pipe", "led bulb"]


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 2))


def embed(model, texts):
    """A real computation from the weights, so that a stale cache entry would show as a different array."""
    with torch.no_grad():
        ids = torch.tensor([[len(t) % 10] for t in texts])
        return model(ids).mean(dim=1).numpy()


def test_second_call_is_a_hit_and_returns_the_same_array(tmp_path):
    cache, model, calls = EmbeddingCache(tmp_path / "cache"), tiny_model(), []

    def compute():
        calls.append(1)
        return embed(model, TEXTS)

    first = cache.get(model, TEXTS, "torch", compute)
    second = cache.get(model, TEXTS, "torch", compute)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(first, second)
    # another process (a later notebook) finds it too
    assert EmbeddingCache(tmp_path / "cache").get(model, TEXTS, "torch", lambda: pytest.fail("recomputed")).shape == (3, 2)


def test_any_change_of_weights_texts_or_method_is_a_miss(tmp_path):
    cache, model = EmbeddingCache(tmp_path), tiny_model()
    cache.get(model, TEXTS, "torch", lambda: embed(model, TEXTS))
    changed = tiny_model()
    with torch.no_grad():
        changed[1].bias[0] += 1e-6  # one weight, by a hair
    assert model_fingerprint(changed) != model_fingerprint(model)
    assert model_fingerprint(tiny_model()) == model_fingerprint(model)  # same seed, same weights: same key
    cache.get(changed, TEXTS, "torch", lambda: embed(changed, TEXTS))
    cache.get(model, TEXTS[::-1], "torch", lambda: embed(model, TEXTS[::-1]))
    cache.get(model, TEXTS, "onnx-fp32", lambda: embed(model, TEXTS))
    assert (cache.hits, cache.misses) == (0, 4)
    assert len(list(tmp_path.glob("*.npy"))) == 4


def test_a_tokenizer_is_part_of_the_key():
    model = tiny_model()
    plain = model_fingerprint(model)
    model.tokenizer = "vocabulary A"
    with_a = model_fingerprint(model)
    model.tokenizer = "vocabulary B"
    assert len({plain, with_a, model_fingerprint(model)}) == 3


def test_texts_fingerprint_does_not_collide_by_concatenation():
    assert texts_fingerprint(["ab", "c"]) != texts_fingerprint(["a", "bc"])
    assert texts_fingerprint([]) != texts_fingerprint([""])
    with pytest.raises(TypeError):
        texts_fingerprint(["fine", 3])


def test_bad_shapes_are_refused(tmp_path):
    cache, model = EmbeddingCache(tmp_path), tiny_model()
    with pytest.raises(ValueError, match="shape"):
        cache.get(model, TEXTS, "torch", lambda: np.zeros((2, 2)))
    with pytest.raises(ValueError, match="method"):
        cache.get(model, TEXTS, "", lambda: embed(model, TEXTS))
    np.save(cache.path(model, TEXTS, "torch"), np.zeros((5, 2)))  # an entry that does not fit these texts
    with pytest.raises(ValueError, match="delete the file"):
        cache.get(model, TEXTS, "torch", lambda: embed(model, TEXTS))


def test_the_onnx_method_encodes_once_through_encode_with_onnx(tmp_path, monkeypatch):
    from ecomrec.models import embedding_cache
    from ecomrec.serve import export

    cache, model, calls = EmbeddingCache(tmp_path / "cache"), tiny_model(), []

    def fake_onnx(m, texts, folder, progress=False):
        calls.append((folder, progress))
        return embed(m, texts)

    monkeypatch.setattr(export, "encode_with_onnx", fake_onnx)
    first = cache.onnx(model, TEXTS, tmp_path / "onnx", progress=True)
    np.testing.assert_array_equal(first, cache.onnx(model, TEXTS, tmp_path / "elsewhere"))
    assert calls == [(tmp_path / "onnx", True)] and (cache.hits, cache.misses) == (1, 1)
    assert cache.path(model, TEXTS, embedding_cache.ONNX_FP32).is_file()  # the same key as get(..., "onnx-fp32", ...)


def test_a_catalogue_pass_takes_onnx_only_from_its_threshold_up(tmp_path, monkeypatch):
    from ecomrec.models import embedding_cache
    from ecomrec.serve import export

    cache, model, through_onnx = EmbeddingCache(tmp_path / "cache"), CountingEncoder(), []
    monkeypatch.setattr(export, "encode_with_onnx", lambda m, texts, folder, progress=False: through_onnx.extend(texts)
                        or encode(m, texts))
    monkeypatch.setattr(embedding_cache, "ONNX_FROM_TEXTS", len(TEXTS))
    monkeypatch.setattr(search, "native_bf16_encoder", lambda m: False)  # a CPU without native bf16
    cache.catalogue(model, TEXTS[:2], tmp_path / "onnx")  # below: PyTorch, under the PyTorch key
    assert through_onnx == [] and cache.path(model, TEXTS[:2], "torch-b64").is_file()
    cache.catalogue(model, TEXTS, tmp_path / "onnx")  # at the threshold: ONNX Runtime, under the ONNX key
    assert through_onnx == TEXTS and cache.path(model, TEXTS, embedding_cache.ONNX_FP32).is_file()


def test_with_native_bf16_a_catalogue_pass_is_pytorch_bf16_under_its_own_key(tmp_path, monkeypatch):
    from ecomrec.models import embedding_cache
    from ecomrec.serve import export

    cache, model, precisions = EmbeddingCache(tmp_path / "cache"), CountingEncoder(), []
    monkeypatch.setattr(export, "encode_with_onnx", lambda *a, **k: pytest.fail("ONNX Runtime used despite native bf16"))
    monkeypatch.setattr(embedding_cache, "ONNX_FROM_TEXTS", 1)
    monkeypatch.setattr(search, "native_bf16_encoder", lambda m: True)
    model.encode = lambda texts, **kw: precisions.append(torch.is_autocast_enabled("cpu")) or CountingEncoder.encode(model, texts, **kw)
    bf16 = cache.catalogue(model, TEXTS, tmp_path / "onnx")
    assert precisions == [True] and cache.path(model, TEXTS, "torch-b64-bf16").is_file()
    fp32 = cache.pytorch(model, TEXTS, bf16=False)  # the same texts in float32: another key, another pass
    assert precisions == [True, False] and (cache.hits, cache.misses) == (0, 2)
    np.testing.assert_allclose(bf16, fp32, atol=2e-2)


class CountingEncoder(torch.nn.Module):
    """SentenceTransformer's `encode` signature over a tiny real computation; remembers every text it encoded."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3, 4)
        self.seen = []
        self.device = torch.device("cpu")  # as a SentenceTransformer's: where autocast runs

    def encode(self, texts, batch_size, normalize_embeddings, convert_to_numpy, show_progress_bar):
        self.seen.extend(texts)
        features = torch.tensor([[len(t), t.count(" "), sum(map(ord, t)) % 97] for t in texts], dtype=torch.float32)
        with torch.no_grad():
            out = torch.nn.functional.normalize(self.proj(features), dim=1)
        return out.float().numpy()  # float32 under bf16 autocast too, as SentenceTransformer.encode


def test_an_edit_encodes_only_the_changed_texts_and_the_base_once(tmp_path):
    cache, model = EmbeddingCache(tmp_path), CountingEncoder()
    base = cache.pytorch(model, TEXTS)
    assert model.seen == TEXTS
    edited = [TEXTS[0], TEXTS[1] + ". Searches: copper fitting", TEXTS[2]]
    vectors, changed = cache.pytorch_edited(model, TEXTS, edited)
    assert changed.tolist() == [False, True, False]
    assert model.seen == TEXTS + [edited[1]]  # the base came from the cache; only the edited text was encoded
    np.testing.assert_array_equal(vectors[~changed], base[~changed])
    np.testing.assert_allclose(vectors[1], encode(CountingEncoder(), [edited[1]])[0], rtol=1e-6)  # what a fresh pass gives
    assert not np.allclose(vectors[1], base[1])
    unchanged, none = cache.pytorch_edited(model, TEXTS, list(TEXTS))
    assert not none.any() and len(model.seen) == 4
    np.testing.assert_array_equal(unchanged, base)
    with pytest.raises(ValueError, match="every row"):
        cache.pytorch_edited(model, TEXTS, TEXTS[:2])


def test_a_model_keys_the_same_after_it_has_tokenized_something():
    """transformers writes each call's truncation and padding into the backend tokenizer: a model that has encoded
    once must still hit the entries written by the same model freshly loaded (04b's embeddings, read by 05)."""
    from ecomrec.models.lm import train_wordpiece_tokenizer

    model = tiny_model()
    model.tokenizer = train_wordpiece_tokenizer(["cordless drill kit", "copper pipe fitting", "led bulb"] * 5, vocab_size=60)
    fresh = model_fingerprint(model)
    model.tokenizer(["cordless drill", "copper"], truncation=True, max_length=4, padding=True)
    assert model.tokenizer.backend_tokenizer.truncation is not None  # the call did change the backend's state
    assert model_fingerprint(model) == fresh
    model.tokenizer = train_wordpiece_tokenizer(["a different corpus entirely"] * 5, vocab_size=40)
    assert model_fingerprint(model) != fresh
