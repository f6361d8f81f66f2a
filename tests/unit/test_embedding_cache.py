import numpy as np
import pytest
import torch

from ecomrec.models.embedding_cache import EmbeddingCache, model_fingerprint, texts_fingerprint

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
