"""Pay for a catalogue pass once: embeddings on disk, keyed by the encoder's weights and the texts.

Encoding a catalogue is the dominant cost of the search chapters on a CPU (2.5 to 5 minutes for the 54,667
Home Depot titles on 2 cores, by runtime and precision). A re-run of `04` with the same seed trains the *same* models (on a CPU runs
repeat bit for bit), and `05` embeds the very Office texts `04b` already embedded with the same MiniLM. The cache
notices: its key is a hash of

* the method (e.g. ``onnx-fp32``, ``torch-b64`` or ``torch-b64-bf16``: two runtimes, batch sizes or precisions
  may differ in the last bits),
* the model — its module layout and settings (`repr`: sequence length, pooling, normalisation), every
  weight tensor's bytes, and its tokenizer's definition (not the truncation and padding each call leaves on it),
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
        digest.update(_tokenizer_definition(backend).encode() if backend is not None else repr(tokenizer).encode())
    return digest.hexdigest()


def _tokenizer_definition(backend) -> str:
    """A fast tokenizer's full definition, less its truncation and padding: transformers sets those on the backend
    at every call (from the call's arguments), so a model that has encoded once would otherwise key differently from
    the same model freshly loaded. The model's own sequence length is in its `repr`."""
    import json

    definition = json.loads(backend.to_str())
    definition.pop("truncation", None)
    definition.pop("padding", None)
    return json.dumps(definition, sort_keys=True)


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
# From how many texts a pass runs through ONNX Runtime (`EmbeddingCache.catalogue`). Exporting the model and checking
# it against PyTorch costs a fixed ~4-5 s on 2 cores; ONNX then embeds titles ~15 % faster. Measured here with
# MiniLM: the smoke catalogue's 2,411 titles took 12.0 s in PyTorch and 16.3 s with the export and check; the full
# catalogue's 54,667 about 270 s against 228 s.
ONNX_FROM_TEXTS = 10_000


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

    def catalogue(self, model, texts: Sequence[str], onnx_dir: str | Path, progress: bool = False) -> np.ndarray:
        """`texts` through the fastest runtime for this device and their number, through the cache: PyTorch under
        bfloat16 autocast where the device multiplies bf16 natively (`search.native_bf16_encoder`; on the course's 2-core
        AVX512-BF16 CPU about 1.25× ONNX Runtime's fp32 and 1.7× PyTorch's fp32), else `onnx` from
        `ONNX_FROM_TEXTS` texts up (its export then pays for itself), else PyTorch in float32."""
        from ecomrec.models.search import native_bf16_encoder

        if native_bf16_encoder(model):
            return self.pytorch(model, texts, progress=progress, bf16=True)
        if len(texts) >= ONNX_FROM_TEXTS:
            return self.onnx(model, texts, onnx_dir, progress=progress)
        return self.pytorch(model, texts, progress=progress, bf16=False)

    def pytorch(self, model, texts: Sequence[str], batch_size: int = 64, progress: bool = False,
                bf16: bool | None = None) -> np.ndarray:
        """`texts` embedded by a SentenceTransformer in PyTorch (`ecomrec.models.search.encode`, normalised; `bf16`
        as there: None = where native), through the cache; the batch size and the precision are part of the key
        (padding to another length, or bf16, may move the last bits)."""
        from ecomrec.models.search import encode, native_bf16_encoder

        if bf16 is None:
            bf16 = native_bf16_encoder(model)
        return self.get(model, texts, f"torch-b{batch_size}" + ("-bf16" if bf16 else ""),
                        lambda: encode(model, texts, batch_size=batch_size, progress=progress, bf16=bf16))

    def pytorch_edited(self, model, base_texts: Sequence[str], texts: Sequence[str],
                       batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of `texts`, an edit of `base_texts` (same length, same order): the base's embeddings (through
        the cache), with only the texts that differ from their base encoded again (through the cache too).

        Returns (embeddings, changed mask). Appending generated text to some items' descriptions then costs a
        pass over those items only, and the base pass is paid once for every notebook that embeds it."""
        base_texts, texts = list(base_texts), list(texts)
        if len(base_texts) != len(texts):
            raise ValueError(f"{len(texts)} texts for {len(base_texts)} base texts: an edit keeps every row")
        embeddings = self.pytorch(model, base_texts, batch_size).copy()
        changed = np.array([a != b for a, b in zip(base_texts, texts)], dtype=bool)
        if changed.any():
            embeddings[changed] = self.pytorch(model, [t for t, c in zip(texts, changed) if c], batch_size)
        return embeddings, changed

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.folder)!r}, hits={self.hits}, misses={self.misses})"
