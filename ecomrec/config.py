"""Constants, profiles, paths, seeds and device choice, read by notebooks through their parameters."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

SEED = 42
DEFAULT_K = 10

# Column names shared by every frame the package writes.
COL_QUERY_ID = "query_id"
COL_QUERY = "query"
COL_PRODUCT_ID = "product_id"
COL_TITLE = "title"
COL_RELEVANCE = "relevance"
COL_USER = "user_id"
COL_ITEM = "item_id"
COL_RATING = "rating"
COL_TIMESTAMP = "timestamp"
COL_SPLIT = "split"

DATA_DIR_ENV = "ECOMREC_DATA_DIR"
PACKAGE_ROOT = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_ROOT.parent


@dataclass(frozen=True)
class Profile:
    """Sizes of one run of the course: `smoke` for tests, `full` for the real report."""

    name: str
    search_queries: int | None  # queries sampled from Home Depot; None keeps all
    search_valid_queries: int
    search_test_queries: int
    rec_users: int | None  # users sampled from Amazon Office; None keeps all
    rec_kcore: int  # minimum interactions per user and per item after sampling
    temporal_valid_frac: float = 0.1
    temporal_test_frac: float = 0.1
    gen_train_steps: int = 60  # optimiser steps of the from-scratch query generator (02)
    gen_products: int | None = 300  # Home Depot products that get synthetic queries; None = all
    triplet_anchors: int = 400  # (query, product) anchors per source for the negative-sampling sets
    mlm_heldout: int = 200  # held-out texts for masked-LM loss (03)
    mlm_scratch_steps: int = 30  # optimiser steps, small BERT from scratch (03)
    mlm_head_steps: int = 10  # steps fitting MiniLM's new MLM head on a frozen encoder (03)
    mlm_adapt_steps: int = 20  # steps of domain-adaptive MLM of all MiniLM weights (03)
    biencoder_steps: int = 12  # steps per bi-encoder fine-tuning run (04); the same in every row
    two_tower_eval_every: int = 5  # steps (batch 32) between valid evaluations of 04's main bi-encoder
    two_tower_patience: int = 3  # valid evaluations without a better NDCG@10 before it stops (04)
    two_tower_max_epochs: float = 0.5  # its budget in passes over the real training pairs (04)
    valid_distractors: int = 300  # products beside the valid-judged ones in the valid sub-catalogue it is selected on (04)
    cross_eval_every: int = 5  # cross-encoder steps (batch 32) between valid re-ranking evaluations (04)
    cross_patience: int = 3  # valid evaluations without a better re-ranking NDCG@10 before it stops (04)
    cross_max_epochs: float = 0.15  # its budget in passes over its training examples (04)
    distill_queries: int | None = 100  # training queries whose candidates the cross-encoder scores for distillation; None = all (04)
    distill_eval_every: int = 5  # distillation steps (batch 64) between valid evaluations on the whole catalogue (04)
    distill_max_epochs: float = 1.0  # its budget in passes over the distillation triples (04)
    rerank_valid_queries: int = 30  # valid queries the cross-encoder, its depth and weight are selected on (04)
    rerank_depths: tuple[int, ...] = (10, 20)  # re-rank depths to choose from on valid (04)
    rerank_queries: int = 20  # test queries whose top-100 the cross-encoder re-ranks in 05's hybrid search and 07
    calibration_judgments: int = 500  # valid judgments that calibrate cross-encoder scores to grades (04)
    behaviour_queries: int = 250  # test queries sampled for the behavioural checks (04)
    sasrec_epochs: int = 3  # SASRec's maximum epochs; early stopping on valid NDCG@10 usually ends it first (05)
    sasrec_patience: int = 3  # epochs without a better valid NDCG@10 before SASRec stops (05)
    sasrec_trials: int = 2  # Optuna trials of the SASRec search, the default configuration first (05)
    rec_trials: int = 4  # Optuna trials of each cheap search: ItemKNN, EASE, ALS, BPR (05)
    rec_seeds: int = 2  # training seeds of plain SASRec and of SASRec + sequence views under each budget rule (05)
    latency_calls: int = 20  # timed model calls per variant and batch size, at most (07)
    latency_seconds: float | None = 15.0  # timing of a variant and batch size ends after this long, once 50 calls were timed (07)
    bench_requests: int = 300  # requests of the load test run inside 07 (`make bench` sends 10,000)
    llm_lora_steps: int = 6  # SmolLM2 LoRA query-writer steps of batch 16 (04b)
    llm_quality_products: int = 16  # test products whose generated queries are judged against real ones (04b)
    llm_products: int | None = 80  # Home Depot products the SmolLM2 LoRA writer covers on a CPU; None = all (04b)
    curve_sizes: tuple[int | None, ...] = (0, 30, 100, None)  # real training queries N of the data-efficiency curve; None = all (06)
    curve_seeds: int = 3  # seeds (subsets, synthetic samples, training order) of every curve point below N = all (06)
    curve_fewshot_products: int = 60  # covered products the N-respecting few-shot SmolLM2 writer prompts, per seed (06)
    llm_office_items: int | None = 24  # Office items given SmolLM2 queries and a description; None = all (04b)


PROFILES: dict[str, Profile] = {
    # sized so that `make test` (every notebook in this profile, and the rest of the suite) fits its time budget
    # on 2 CPU cores: a catalogue of about 2,500 products, a few optimiser steps per model
    "smoke": Profile("smoke", search_queries=400, search_valid_queries=60, search_test_queries=120,
                     rec_users=800, rec_kcore=3, gen_train_steps=30, gen_products=150, triplet_anchors=240,
                     mlm_heldout=80, mlm_scratch_steps=12, mlm_head_steps=6, mlm_adapt_steps=8,
                     biencoder_steps=4, rerank_queries=6, calibration_judgments=300,
                     behaviour_queries=50, sasrec_epochs=100, sasrec_patience=6, sasrec_trials=2, rec_trials=4,
                     latency_calls=6, bench_requests=150,
                     two_tower_max_epochs=0.35, cross_max_epochs=0.1,
                     llm_lora_steps=3, llm_quality_products=10, llm_products=40, llm_office_items=12,
                     curve_seeds=2),  # two seeds still exercise the seed spread; the third cost 06 about 15 s
    "full": Profile("full", search_queries=None, search_valid_queries=1_000, search_test_queries=2_000,
                    rec_users=None, rec_kcore=5, gen_train_steps=3_000, gen_products=None, triplet_anchors=20_000,
                    mlm_heldout=1_000, mlm_scratch_steps=400, mlm_head_steps=100, mlm_adapt_steps=350,
                    biencoder_steps=40, two_tower_eval_every=300, two_tower_max_epochs=1.5, valid_distractors=4_000,
                    cross_eval_every=150, cross_max_epochs=0.4,
                    distill_queries=4_000, distill_eval_every=50, distill_max_epochs=2.0, rerank_valid_queries=300, rerank_depths=(10, 20, 50), rerank_queries=60, calibration_judgments=3_000, sasrec_epochs=100,
                    sasrec_patience=5, sasrec_trials=8, rec_trials=30, rec_seeds=3,
                    latency_calls=300, bench_requests=2_000, llm_lora_steps=40, llm_quality_products=200,
                    llm_products=5_000, llm_office_items=None, curve_sizes=(0, 100, 300, 1_000, 3_000, None),
                    curve_fewshot_products=1_000),
}


# The `gpu` profile: the full profile's data and protocol, with the training budgets a CPU cannot afford — about a
# pass over the real pairs for every bi-encoder row instead of 40 steps, ten times the pretraining and LoRA steps,
# several passes for the early-stopped models (their patience still ends them), SmolLM2 over the whole catalogue and
# every Office item, re-ranking on every test query, larger searches. Its figures compare with the full profile's.
GPU_BUDGETS: dict[str, object] = {
    "gen_train_steps": 10_000, "mlm_scratch_steps": 4_000, "mlm_head_steps": 1_000, "mlm_adapt_steps": 3_500,
    "biencoder_steps": 1_200, "two_tower_max_epochs": 6.0, "cross_max_epochs": 3.0, "distill_queries": None,
    "distill_max_epochs": 10.0, "rerank_queries": 2_000,
    "sasrec_trials": 30, "rec_trials": 100, "llm_lora_steps": 400, "llm_products": None,
}
PROFILES["gpu"] = replace(PROFILES["full"], name="gpu", **GPU_BUDGETS)
ACCELERATOR_PROFILES = frozenset({"gpu"})  # profiles whose budgets take days on a CPU


def budget_fields() -> list[str]:
    """The `Profile` fields that set how long something trains or how much is generated, not what data is used:
    the ones `GPU_BUDGETS` may change."""
    data = {"name", "search_queries", "search_valid_queries", "search_test_queries", "rec_users", "rec_kcore",
            "temporal_valid_frac", "temporal_test_frac", "curve_sizes", "curve_seeds", "rec_seeds",
            "mlm_heldout", "valid_distractors", "rerank_valid_queries", "calibration_judgments"}
    return [f.name for f in fields(Profile) if f.name not in data]


def check_device(profile: str | Profile, device: str) -> None:
    """Refuse a GPU-budget profile on a CPU (it would run for days): the full profile is the CPU's real report."""
    name = get_profile(profile).name
    if name in ACCELERATOR_PROFILES and not str(device).startswith("cuda"):
        raise RuntimeError(f"profile {name!r} sets training budgets for a CUDA GPU and would take days on {device!r}; "
                           "use PROFILE=full on a CPU (or DEVICE=cuda on a GPU machine)")


def get_profile(name: str | Profile) -> Profile:
    """Return the named profile (a Profile passes through) or raise a ValueError listing the valid names."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Data directory: the argument, else $ECOMREC_DATA_DIR, else ../shared/data when it exists, else data/."""
    if data_dir:
        return Path(data_dir).expanduser().resolve()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser().resolve()
    for root in (Path.cwd(), SOURCE_ROOT):
        shared = root.parent / "shared" / "data"
        if shared.is_dir():
            return shared.resolve()
    return (Path.cwd() / "data").resolve()


def artifact_dir(base: str | os.PathLike, profile: str | Profile) -> Path:
    """Folder of one profile's artifacts (created on demand, never at import)."""
    path = Path(base) / get_profile(profile).name
    path.mkdir(parents=True, exist_ok=True)
    return path


def set_seeds(seed: int = SEED) -> None:
    """Seed Python, NumPy and (when installed) torch."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def make_deterministic(device: str) -> bool:
    """On CUDA, ask for deterministic kernels (cuDNN without autotuning, deterministic cuBLAS workspaces,
    `torch.use_deterministic_algorithms`): slower, and the same run gives the same numbers. Returns whether
    anything was set. On the CPU nothing is needed: this course's CPU runs repeat exactly with the same seed
    and thread count (tests/smoke/test_determinism.py checks one notebook)."""
    if not str(device).startswith("cuda"):
        return False
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts: before any CUDA work
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)  # an op without a deterministic kernel warns
    return True


def resolve_device(device: str = "auto") -> str:
    """'auto' gives 'cuda' when a GPU is visible, else 'cpu'; other values pass through after a check."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but torch sees no CUDA GPU")
    return device


def native_bf16(device: str) -> bool:
    """Whether `device` multiplies in bfloat16 natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX
    (oneDNN then runs bf16 matrix products about twice as fast as fp32). Elsewhere bf16 is emulated and slower
    than fp32."""
    import torch

    if str(device).startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    if str(device) != "cpu":
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
