"""ONNX Runtime and int8 versions of the encoders give the fp32 model's outputs (parity), and the HNSW index."""

import numpy as np
import pandas as pd
import pytest

from ecomrec.models.search import Bf16Autocast, DenseIndex, encode
from ecomrec.serve import export as X
from ecomrec.serve.index import HNSWIndex, brute_force_top_k, choose_ef_search, recall_at_k, recall_speed_curve

TEXTS = ["cordless drill", "white interior wall paint 1 gal", "garden hose 50 ft heavy duty rubber with brass fittings",
         "toilet seat", "Milwaukee M18 FUEL 1/2 in. hammer drill kit with two 5.0 Ah batteries and charger", "lamp"]


def cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def onnx_paths(minilm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    fp32 = X.export_sentence_encoder(minilm, folder / "fp32" / "model.onnx")
    return fp32, X.quantize_onnx(fp32, folder / "int8" / "model.onnx")


def test_onnx_sentence_encoder_matches_pytorch(minilm, onnx_paths):
    reference = encode(minilm, TEXTS, bf16=False)  # float32: the precision ONNX Runtime runs in
    fp32, int8 = (X.OnnxSentenceEncoder(path) for path in onnx_paths)
    out = fp32.encode(TEXTS, batch_size=4)  # two batches, sorted by length inside
    assert out.shape == reference.shape and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    assert cosines(out, reference).min() > 0.9999
    assert cosines(int8.encode(TEXTS), reference).min() >= 0.99
    assert X.file_size_mb(onnx_paths[1]) < 0.7 * X.file_size_mb(onnx_paths[0])  # int8 matrices, fp32 embedding table
    assert fp32.encode([]).shape == (0, reference.shape[1])


def test_torch_int8_matches(minilm):
    quantized = X.quantize_torch(minilm)
    assert cosines(encode(quantized, TEXTS, bf16=False), encode(minilm, TEXTS, bf16=False)).min() >= 0.99


def test_onnx_cross_encoder_matches_pytorch(tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    from ecomrec.models.encoders import minilm_path

    cross = CrossEncoder(str(minilm_path()), num_labels=1, max_length=64, device="cpu")
    pairs = [(TEXTS[i], TEXTS[-1 - i]) for i in range(len(TEXTS))]
    reference = cross.predict(pairs, show_progress_bar=False)
    onnx = X.OnnxCrossEncoder(X.export_cross_encoder(cross, tmp_path / "cross" / "model.onnx"))
    assert np.abs(onnx.predict(pairs, batch_size=4) - reference).max() < 1e-4
    many = [(f"{a} {i}", b) for i, (a, b) in enumerate(pairs * 3)]  # distinct pairs: a swapped row would show
    parallel = X.ParallelOnnxCrossEncoder(cross, tmp_path / "parallel", check_pairs=pairs[:3], workers=2)
    assert np.abs(parallel.predict(many, batch_size=3) - cross.predict(many, show_progress_bar=False)).max() < 1e-4
    assert parallel.predict([]).shape == (0,)


def test_parallel_cross_encoder_refuses_a_different_model(tmp_path, monkeypatch):
    import copy

    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from ecomrec.models.encoders import minilm_path

    cross = CrossEncoder(str(minilm_path()), num_labels=1, max_length=64, device="cpu")
    export = X.export_cross_encoder

    def export_another(model, path):  # the exported graph no longer is the model being checked
        other = copy.deepcopy(model)
        with torch.no_grad():
            other.model.classifier.bias += 1.0
        return export(other, path)

    monkeypatch.setattr(X, "export_cross_encoder", export_another)
    with pytest.raises(RuntimeError, match="differ"):
        X.ParallelOnnxCrossEncoder(cross, tmp_path / "p", check_pairs=[(TEXTS[0], TEXTS[1]), (TEXTS[2], TEXTS[3])])


def test_export_rejects_other_pooling(tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    from ecomrec.models.encoders import load_minilm

    model = load_minilm("cpu")
    cls_model = SentenceTransformer(modules=[model[0], Pooling(384, pooling_mode="cls")])
    with pytest.raises(ValueError, match="mean Pooling"):
        X.export_sentence_encoder(cls_model, tmp_path / "model.onnx")


def test_hnsw_recall_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(10_000, 13_000)
    index, exact = HNSWIndex(ids, vectors, ef_search=128), DenseIndex(ids, vectors)
    queries = vectors[:200] + 0.1 * rng.normal(size=(200, 32)).astype(np.float32)
    found, scores = index.search(queries, k=10)
    assert recall_at_k(found, exact.search(queries, k=10)[0]) > 0.95 and (np.diff(scores, axis=1) <= 1e-6).all()
    loaded = HNSWIndex.load(index.save(tmp_path / "index.hnsw"), ids)
    loaded.ef_search = 128
    assert (loaded.search(queries, k=10)[0] == found).all()
    with pytest.raises(ValueError, match="ids"):
        HNSWIndex.load(tmp_path / "index.hnsw", ids[:10])
    curve = recall_speed_curve(index, exact, queries, ef_values=(10, 200))
    assert curve["recall@k"].iloc[1] <= curve["recall@k"].iloc[2] and curve["queries_per_second"].gt(0).all()
    assert curve["recall@k"].iloc[0] > 0.99  # exact search, measured against the numpy oracle


def test_exact_recall_is_measured_not_assumed():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    oracle = brute_force_top_k(vectors, queries, 5)
    assert (oracle == np.argsort(-(queries @ vectors.T), axis=1)[:, :5]).all()

    class Wrong(DenseIndex):  # an "exact" index that returns the 2nd..6th best: its recall must show it
        def search(self, q, k=10, **kw):
            ids, scores = super().search(q, k=k + 1)
            return ids[:, 1:], scores[:, 1:]

    index = HNSWIndex(np.arange(500), vectors, neighbours=8)
    curve = recall_speed_curve(index, Wrong(np.arange(500), vectors), queries, k=5, ef_values=(64,))
    assert curve["recall@k"].iloc[0] == pytest.approx(0.8)


def test_hnsw_returns_k_results_when_k_exceeds_ef_search():
    """Tight clusters: a beam of 4 candidates leaves most of a top 100 empty (faiss pads with -1) unless the walk
    widens its beam to k."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16))
    vectors = (centres[rng.integers(40, size=2_000)] + 0.01 * rng.normal(size=(2_000, 16))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = HNSWIndex(np.arange(2_000), vectors, ef_search=4)
    found, scores = index.search(vectors[:200], k=100)
    assert found.shape == (200, 100) and (np.diff(scores, axis=1) <= 1e-6).all()
    assert index.ef_search == 4  # the setting itself is unchanged


def test_hnsw_build_is_reproducible_on_one_thread(tmp_path):
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(2_000, 16)).astype(np.float32)
    first = HNSWIndex(np.arange(2_000), vectors).save(tmp_path / "a.hnsw").read_bytes()
    assert HNSWIndex(np.arange(2_000), vectors).save(tmp_path / "b.hnsw").read_bytes() == first


def test_choose_ef_search_says_when_the_target_is_missed():
    curve = pd.DataFrame({"method": ["exact", "HNSW", "HNSW", "HNSW"], "ef_search": [np.nan, 16, 32, 64],
                          "recall@k": [1.0, 0.90, 0.96, 0.99]})
    assert choose_ef_search(curve, 0.95) == (32, True)
    assert choose_ef_search(curve, 0.995) == (64, False)


def test_recall_at_k_by_hand():
    assert recall_at_k(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[3, 2, 9], [7, 8, 9]])) == pytest.approx((2 / 3 + 0) / 2)


def test_encode_with_onnx_equals_pytorch(minilm, tmp_path):
    out = X.encode_with_onnx(minilm, TEXTS * 3, tmp_path / "catalogue", batch_size=4, check=5)
    assert out.shape == (len(TEXTS) * 3, 384) and cosines(out, encode(minilm, TEXTS * 3, bf16=False)).min() > 0.9999


def test_encode_under_bf16_autocast_stays_close_to_float32(minilm, onnx_paths):
    from ecomrec.config import native_bf16

    fp32, bf16 = encode(minilm, TEXTS, bf16=False), encode(minilm, TEXTS, bf16=True)
    assert bf16.dtype == np.float32 and np.allclose(np.linalg.norm(bf16, axis=1), 1, atol=1e-5)
    assert not np.array_equal(fp32, bf16)  # the autocast took effect
    assert cosines(fp32, bf16).min() > 0.999
    np.testing.assert_array_equal(encode(minilm, TEXTS), bf16 if native_bf16("cpu") else fp32)  # the default: where native
    onnx = X.OnnxSentenceEncoder(onnx_paths[0])
    np.testing.assert_allclose(encode(onnx, TEXTS), onnx.encode(TEXTS), atol=1e-6)  # not PyTorch: as it is
    with pytest.raises(TypeError, match="PyTorch"):
        encode(onnx, TEXTS, bf16=True)


def test_bf16_autocast_versions_stay_close_to_float32(minilm, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    from ecomrec.models.encoders import minilm_path

    bf16 = Bf16Autocast(minilm)
    out = encode(bf16, TEXTS, bf16=False)  # encode's own autocast off: the wrapper's is what runs
    np.testing.assert_array_equal(out, encode(minilm, TEXTS, bf16=True))
    assert bf16.get_embedding_dimension() == 384
    cross = CrossEncoder(str(minilm_path()), num_labels=1, max_length=64, device="cpu")
    pairs = [("drill", t) for t in TEXTS]
    fp32_scores, bf16_scores = cross.predict(pairs), Bf16Autocast(cross).predict(pairs)
    assert not np.array_equal(fp32_scores, bf16_scores) and np.abs(fp32_scores - bf16_scores).max() < 0.02
    with pytest.raises(TypeError, match="PyTorch"):
        Bf16Autocast(X.OnnxSentenceEncoder(X.export_sentence_encoder(minilm, tmp_path / "model.onnx")))


def test_encode_with_onnx_workers_keep_the_order(minilm, tmp_path):
    texts = [f"{t} {i}" for i, t in enumerate(TEXTS * 4)]  # distinct texts: a swapped row would show
    one = X.encode_with_onnx(minilm, texts, tmp_path / "one", batch_size=3, check=4, workers=1)
    two = X.encode_with_onnx(minilm, texts, tmp_path / "two", batch_size=3, check=4, workers=2)
    assert np.allclose(one, two, atol=1e-5)
    assert cosines(two, encode(minilm, texts, bf16=False)).min() > 0.9999
    assert X.encode_with_onnx(minilm, [], tmp_path / "none", workers=2).shape == (0, 384)


def test_int8_and_onnx_export_leave_no_library_notices_on_stderr(tmp_path):
    # in a fresh process, with every Python warning shown: what a lesson cell would print under it
    import subprocess
    import sys

    code = ("import warnings, torch\n"
            "warnings.simplefilter('default')\n"
            "from ecomrec.models.encoders import load_minilm\n"
            "from ecomrec.serve import export as X\n"
            "model = load_minilm('cpu')\n"
            "fp32 = X.export_sentence_encoder(model, __import__('pathlib').Path(r'%s') / 'fp32' / 'model.onnx')\n"
            "X.quantize_onnx(fp32, fp32.parent.parent / 'int8' / 'model.onnx')\n"
            "X.quantize_torch(model).encode(['cordless drill'])\n" % tmp_path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for notice in ("TracerWarning", "aten::index", "pre-processing before quantization", "reduce_range",
                   "torch.quantize_per_channel"):
        assert notice not in done.stderr, done.stderr[-3000:]
