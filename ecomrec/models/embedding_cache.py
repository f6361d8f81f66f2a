"""Pay for a catalogue pass once: embeddings on disk, keyed by the encoder's weights and the texts.

Encoding a catalogue is the dominant cost of the search chapters on a CPU (about 5 minutes for the 54,667
Home Depot titles on 2 cores). Several notebooks train the *same* model from the same data and seed — `06`'s
reference row is `04`'s "MiniLM + MNRL" row again, `06`'s dense-hard row is `04`'s hard-negatives row — and
on a CPU those runs repeat bit for bit. The cache notices: its key is a hash of

* the method (e.g. ``onnx-fp32`` or ``torch``: two runtimes may differ in the last bits),
* the model — its module layout and settings (`repr`: sequence length, pooling, normalisation), every
  weight tensor's bytes, and its tokenizer,
* the texts, in order,
* the versions of the libraries that compute the numbers,

so a hit returns exactly what this model would compute for these texts, and anything that changes the
result (one weight, one title, the runtime) is a miss. Nothing is keyed by file names or notebook names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ecomrec.storage import save_array


def _library_versions() -> str:
    import importlib.metadata as metadata

    names = ("torch", "transformers", "sentence-transformers", "onnxruntime", "tokenizers")
    versions = []
    for name in names:
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}=absent")
    return ";".join(versions)


def model_fingerprint(model) -> str:
    """sha256 of a torch model's layout and settings, all its weights (names, dtypes, shapes, bytes) and, when
    it has one, its tokenizer's full definition."""
    import torch

    digest = hashlib.sha256(repr(model).encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        digest.update(backend.to_str().encode() if backend is not None else repr(tokenizer).encode())
    return digest.hexdigest()


def texts_fingerprint(texts: Sequence[str]) -> str:
    """sha256 of the texts in order (each one length-prefixed, so no two lists collide by concatenation)."""
    digest = hashlib.sha256(str(len(texts)).encode())
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must be strings, got {type(text).__name__}")
        data = text.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


ONNX_FP32 = "onnx-fp32"  # the method of `EmbeddingCache.onnx`


class EmbeddingCache:
    """A folder of `<key>.npy` files. `get(model, texts, method, compute)` returns the cached array when the
    key is there, else calls `compute()` once, checks its shape, stores it (atomically) and returns it.
    `hits` and `misses` count what happened, for the notebooks to print."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0

    def key(self, model, texts: Sequence[str], method: str) -> str:
        if not method:
            raise ValueError("method must name how the embeddings are computed, e.g. 'onnx-fp32' or 'torch'")
        parts = (method, model_fingerprint(model), texts_fingerprint(texts), _library_versions())
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]

    def path(self, model, texts: Sequence[str], method: str) -> Path:
        return self.folder / f"{self.key(model, texts, method)}.npy"

    def get(self, model, texts: Sequence[str], method: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        texts = list(texts)
        path = self.path(model, texts, method)
        if path.is_file():
            embeddings = np.load(path)
            if embeddings.ndim != 2 or len(embeddings) != len(texts):
                raise ValueError(f"cached embeddings {path} have shape {embeddings.shape}, expected {len(texts)} rows: "
                                 "delete the file")
            self.hits += 1
            return embeddings
        embeddings = np.asarray(compute())
        if embeddings.ndim != 2 or len(embeddings) != len(texts):
            raise ValueError(f"compute() returned shape {embeddings.shape} for {len(texts)} texts")
        save_array(path, embeddings)
        self.misses += 1
        return embeddings

    def onnx(self, model, texts: Sequence[str], onnx_dir: str | Path, progress: bool = False) -> np.ndarray:
        """`texts` embedded by a SentenceTransformer exported to ONNX Runtime (fp32, checked against PyTorch:
        `ecomrec.serve.export.encode_with_onnx`, its export written to `onnx_dir`), through the cache."""
        from ecomrec.serve.export import encode_with_onnx

        return self.get(model, texts, ONNX_FP32, lambda: encode_with_onnx(model, texts, onnx_dir, progress=progress))

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.folder)!r}, hits={self.hits}, misses={self.misses})"
