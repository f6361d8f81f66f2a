"""Faster inference for the encoders: dynamic int8 (PyTorch), ONNX Runtime fp32 and int8.

A sentence encoder is exported as its transformer alone (token ids → hidden states); mean pooling and
L2 normalisation run in NumPy, exactly as in the SentenceTransformer's Pooling and Normalize modules.
A cross-encoder is exported whole (token ids → one relevance logit). Every runtime object offers the
method its PyTorch original has (`encode` / `predict`), so evaluation code takes either.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ecomrec.storage import atomic_path

ONNX_OPSET = 17


class _Exportable(torch.nn.Module):
    """Wraps a Hugging Face encoder so that the exported graph takes token tensors and has one output."""

    def __init__(self, model: torch.nn.Module, output: str):
        super().__init__()
        self.model, self.output = model, output

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state if self.output == "hidden" else out.logits


def _export(model: torch.nn.Module, tokenizer, path: Path, output: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()
    sample = tokenizer(["cordless drill", "a longer sample product title"], ["a title", "another title"],
                       padding=True, return_tensors="pt")
    inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
    axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
    axes[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "tokens"}
    tokenizer.save_pretrained(str(path.parent))  # first: a model file present means its tokenizer is too
    with torch.no_grad(), atomic_path(path) as tmp, warnings.catch_warnings():
        # the tracer warns about Python-side branches (attention masks) and advanced indexing; both are fixed
        # for inference, and every export is checked against PyTorch afterwards (parity in `encode_with_onnx`, 07)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(_Exportable(model, output), tuple(sample[name] for name in inputs), str(tmp),
                          input_names=inputs, output_names=[output], dynamic_axes=axes,
                          opset_version=ONNX_OPSET, dynamo=False)
    return path


def export_sentence_encoder(encoder, path: str | Path) -> Path:
    """Write a SentenceTransformer's transformer as ONNX (fp32) at `path`, its tokenizer beside it."""
    transformer = encoder[0]
    _check_mean_pooling(encoder)
    return _export(transformer.auto_model, transformer.tokenizer, Path(path), "hidden")


def export_cross_encoder(cross_encoder, path: str | Path) -> Path:
    """Write a sentence-transformers CrossEncoder (one output) as ONNX (fp32) at `path`."""
    return _export(cross_encoder.model, cross_encoder.tokenizer, Path(path), "logits")


def _check_mean_pooling(encoder) -> None:
    names = [type(module).__name__ for module in encoder]
    pooling = encoder[1] if len(encoder) > 1 else None
    if names[1:] not in (["Pooling", "Normalize"], ["Pooling"]) or pooling.get_config_dict().get("pooling_mode") != "mean":
        raise ValueError(f"only Transformer → mean Pooling (→ Normalize) encoders can be exported, got {names}")


def quantize_onnx(source: str | Path, target: str | Path) -> Path:
    """Dynamic int8 quantization of an ONNX model's matrix multiplications (weights stored as uint8 per
    output channel, activations quantized on the fly); the tokenizer files are copied along.

    Per-channel scales and a 7-bit range are what keep the output close to fp32 on CPUs without VNNI
    (AVX2 only): with ONNX Runtime's defaults (signed per-tensor weights) MiniLM's embeddings drift to
    a cosine of about 0.95; with these settings they stay above 0.99 (tested). Embedding tables stay fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.parent != target.parent:  # the tokenizer first: a model file present means its tokenizer is too
        for name in os.listdir(source.parent):
            if not name.endswith(".onnx"):
                (target.parent / name).write_bytes((source.parent / name).read_bytes())
    import logging

    class _NoPreprocessingAdvice(logging.Filter):  # onnxruntime logs it on every call; the parity checks decide
        def filter(self, record):
            return "pre-processing before quantization" not in record.getMessage()

    advice = _NoPreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        with atomic_path(target) as tmp:
            quantize_dynamic(str(source), str(tmp), op_types_to_quantize=["MatMul"], weight_type=QuantType.QUInt8,
                             per_channel=True, reduce_range=True)
    finally:
        logging.getLogger().removeFilter(advice)
    return target


def quantize_torch(model: torch.nn.Module, engine: str = "qnnpack") -> torch.nn.Module:
    """A copy of `model` whose Linear layers run in dynamic int8 with per-channel weight scales.

    Sets PyTorch's quantized engine for the whole process (packed weights belong to one engine). On
    AVX2 CPUs the default x86/fbgemm engine drifts MiniLM's embeddings to a cosine of about 0.92-0.98
    with fp32; qnnpack with per-channel scales stays above 0.99 (tested).
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if engine not in torch.backends.quantized.supported_engines:
        raise ValueError(f"quantized engine {engine!r} not available: {torch.backends.quantized.supported_engines}")
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():  # torch's own deprecation notice for its quantized tensors (torchao replaces them)
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize_per_channel",
                                category=UserWarning)
        quantized = quantize_dynamic(copy.deepcopy(model).cpu().eval(), {torch.nn.Linear: per_channel_dynamic_qconfig})
        if engine == "qnnpack":
            _spend_reduce_range_notice(quantize_dynamic, per_channel_dynamic_qconfig)
    return quantized


def _spend_reduce_range_notice(quantize_dynamic, qconfig) -> None:
    """qnnpack's dynamic int8 Linear says once per process, from C++ straight to the process's stderr, that it
    ignores `reduce_range` (which torch's dynamic Linear always passes; harmless: qnnpack needs no reduced
    range). Spend that one notice on a 4 × 4 layer with stderr muted, so that it never lands under a lesson."""
    import sys

    layer = quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(4, 4)), {torch.nn.Linear: qconfig})
    sys.stderr.flush()
    saved, muted = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(muted, 2)
        with torch.no_grad():
            layer(torch.zeros(1, 4))
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(muted)


class _OnnxModel:
    def __init__(self, path: str | Path, threads: int | None = None, max_length: int = 64):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX model at {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(path.parent))
        self.max_length, self.path = max_length, path
        self.inputs = [node.name for node in self.session.get_inputs()]

    def _run(self, texts, batch_size: int, pairs: bool = False) -> np.ndarray:
        texts = list(texts)
        order = np.argsort([-len(t[0]) - len(t[1]) if pairs else -len(t) for t in texts], kind="stable")
        parts = []
        for start in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[start:start + batch_size]]
            args = ([a for a, _ in batch], [b for _, b in batch]) if pairs else (batch,)
            tokens = self.tokenizer(*args, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
            feeds = {name: tokens[name].astype(np.int64) for name in self.inputs}
            parts.append(self._postprocess(self.session.run(None, feeds)[0], feeds["attention_mask"]))
        if not parts:
            return np.empty((0,), dtype=np.float32)
        out = np.concatenate(parts)
        restored = np.empty_like(out)
        restored[order] = out
        return restored

    def _postprocess(self, output: np.ndarray, mask: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


class OnnxSentenceEncoder(_OnnxModel):
    """ONNX Runtime sentence encoder: `encode(texts)` as SentenceTransformer.encode (mean pooling, L2 norm)."""

    def _postprocess(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        weights = mask[..., None].astype(np.float32)
        return (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)

    def encode(self, texts: Sequence[str], batch_size: int = 32, normalize_embeddings: bool = True,
               convert_to_numpy: bool = True, show_progress_bar: bool = False, **_) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not one string")
        embeddings = self._run(texts, batch_size).astype(np.float32, copy=False)
        if embeddings.ndim == 1:  # no texts
            return embeddings.reshape(0, self.get_embedding_dimension())
        if normalize_embeddings:
            embeddings = embeddings / np.clip(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12, None)
        return embeddings

    def get_embedding_dimension(self) -> int:
        return int(self.session.get_outputs()[0].shape[-1])


class OnnxCrossEncoder(_OnnxModel):
    """ONNX Runtime cross-encoder: `predict(pairs)` returns sigmoid scores, as CrossEncoder.predict."""

    def _postprocess(self, logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-logits[:, 0]))

    def predict(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, **_) -> np.ndarray:
        return self._run([tuple(p) for p in pairs], batch_size, pairs=True).astype(np.float32, copy=False)


def file_size_mb(path: str | Path) -> float:
    """Size on disk in MB (10^6 bytes) of a file, or of every file under a folder."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def _sessions(kind: type, path: Path, workers: int | None) -> list:
    """`workers` sessions of one ONNX model (default: torch's thread count): single-threaded when they will
    run side by side, else one session with all threads."""
    workers = max(1, workers or torch.get_num_threads())
    return [kind(path, threads=1 if workers > 1 else None) for _ in range(workers)]


def _sharded(sessions: list, items: list, lengths: Sequence[int], call, progress: str | None = None) -> np.ndarray:
    """Run `call(session, part)` for interleaved, length-balanced shards of `items`, one thread per session,
    and put the results back in the order of `items`."""
    from concurrent.futures import ThreadPoolExecutor

    from ecomrec.progress import progress as progress_bar

    workers = len(sessions)
    by_length = np.argsort(np.asarray(lengths), kind="stable")
    shards = [by_length[w::workers] for w in range(workers)]  # every shard gets short and long items alike
    chunk = 2048
    bar = progress_bar(total=len(items), desc=progress or "", disable=progress is None)

    def run(worker: int) -> np.ndarray:
        shard, parts = shards[worker], []
        for start in range(0, len(shard), chunk):
            parts.append(call(sessions[worker], [items[i] for i in shard[start:start + chunk]]))
            bar.update(len(parts[-1]))
        return np.concatenate(parts)

    with ThreadPoolExecutor(workers) as pool:
        results = [(shard, result) for shard, result in zip(shards, pool.map(run, range(workers))) if len(shard)]
    bar.close()
    out = np.empty((len(items), *results[0][1].shape[1:]), results[0][1].dtype)
    for shard, result in results:
        out[shard] = result
    return out


def encode_with_onnx(model, texts: Sequence[str], folder: str | Path, batch_size: int = 16, check: int = 256,
                     progress: bool = False, workers: int | None = None) -> np.ndarray:
    """Embed many texts with `model` exported to ONNX Runtime (fp32): the same numbers as PyTorch, faster
    on a CPU. Checks `check` evenly spaced texts against PyTorch first and raises if the minimum cosine
    falls below 0.9999.

    `workers` single-threaded sessions (default: torch's thread count) embed interleaved, length-balanced
    shards side by side; on this course's 2 cores that is 10-15 % faster than one session with two
    threads (187 against 161-175 titles/s), since short sequences leave a two-thread session idle.
    """
    from ecomrec.models.search import encode

    texts = list(texts)
    sessions = _sessions(OnnxSentenceEncoder, export_sentence_encoder(model, Path(folder) / "model.onnx"), workers)
    sample = texts[:: max(1, len(texts) // check)] if check > 0 else []
    if sample:
        cosine = float((encode(sessions[0], sample) * encode(model, sample, bf16=False)).sum(axis=1).min())
        if cosine < 0.9999:
            raise RuntimeError(f"ONNX Runtime embeddings differ from PyTorch's (minimum cosine {cosine:.5f})")
    if not texts:
        return np.empty((0, sessions[0].get_embedding_dimension()), np.float32)
    return _sharded(sessions, texts, [len(t) for t in texts], lambda session, part: session.encode(part, batch_size=batch_size),
                    progress="encode" if progress else None)


class ParallelOnnxCrossEncoder:
    """A CrossEncoder exported to ONNX Runtime (fp32) and run as `workers` single-threaded sessions on
    length-balanced shards of the pairs; `predict(pairs)` returns the same sigmoid scores as
    `CrossEncoder.predict`. `check_pairs` are scored by both first; it raises if any score differs by
    more than 1e-4.
    """

    def __init__(self, cross_encoder, folder: str | Path, check_pairs: Sequence[tuple[str, str]] = (),
                 workers: int | None = None):
        self.sessions = _sessions(OnnxCrossEncoder, export_cross_encoder(cross_encoder, Path(folder) / "model.onnx"), workers)
        check_pairs = [tuple(p) for p in check_pairs]
        if check_pairs:
            reference = np.asarray(cross_encoder.predict(check_pairs, show_progress_bar=False), dtype=np.float32)
            difference = float(np.abs(self.sessions[0].predict(check_pairs) - reference).max())
            if difference > 1e-4:
                raise RuntimeError(f"ONNX Runtime cross-encoder scores differ from PyTorch's by up to {difference:.2e}")

    def predict(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, show_progress_bar: bool = False,
                **_) -> np.ndarray:
        pairs = [tuple(p) for p in pairs]
        if not pairs:
            return np.empty((0,), np.float32)
        return _sharded(self.sessions, pairs, [len(a) + len(b) for a, b in pairs],
                        lambda session, part: session.predict(part, batch_size=batch_size),
                        progress="score pairs" if show_progress_bar else None)
