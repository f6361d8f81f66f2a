"""Quality floors for the smoke runs: a model that regresses to nothing must fail `make test`.

Each floor compares one recorded figure with a baseline the same notebook (or an earlier one) records, less a
margin, or with a fixed minimum where no baseline exists. The margins come from the smoke profile's own values
(the closing note of the change that set them lists each value): wide enough for seed and host noise, far
tighter than a broken model. `tests/unit/test_floors.py` feeds every floor a deliberately broken run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Floor:
    """`key` ≥ `baseline` − `margin`, where `baseline` is another recorded key or a number."""

    key: str
    baseline: str | float
    margin: float = 0.0
    why: str = ""

    def check(self, metrics: dict) -> str | None:
        """None when the floor holds, else what failed, with the values."""
        if self.key not in metrics:
            return f"{self.key} was not recorded"
        if isinstance(self.baseline, str):
            if self.baseline not in metrics:
                return f"{self.baseline} (the baseline of {self.key}) was not recorded"
            base, name = metrics[self.baseline], self.baseline
        else:
            base, name = self.baseline, "a fixed minimum"
        floor = base - self.margin
        if metrics[self.key] >= floor:
            return None
        return f"{self.key} = {metrics[self.key]:.4f} < {floor:.4f} ({name} {base:.4f} − {self.margin}){': ' + self.why if self.why else ''}"


def _search(row: str) -> str:
    return f"search/test/{row}/ndcg@10"


ZERO_SHOT = _search("MiniLM_zero-shot")
FLOORS: dict[str, list[Floor]] = {
    "04_finetuning": [
        Floor(_search("BM25"), 0.30, why="BM25 finds judged products for most queries"),
        Floor(ZERO_SHOT, 0.30, why="the packaged MiniLM, untouched"),
        *[Floor(_search(row), ZERO_SHOT, 0.03, why="fine-tuning must not undo the pretrained encoder")
          for row in ("MiniLM_plus_MNRL", "DAPT_MiniLM_plus_MNRL", "MiniLM_plus_MNRL_LoRA", "MiniLM_plus_MNRL_early-stopped",
                      "selected_on_valid")],
        Floor("search/test/reranked_cross-encoder_alone/ndcg@10", 0.03,
              why="re-ranking must still put some relevant product in the top 10"),
        Floor("search/test/behaviour_minimum_functionality/pass_rate", 0.8),
    ],
    "04b_llm_synthesis": [
        Floor("llm/test_bm25/title_only/ndcg@10", 0.40, why="BM25 over the titles must find relevant products (smoke: 0.62)"),
        Floor("llm/test_bm25/title_plus_SmolLM2_LoRA_queries/ndcg@10", "llm/test_bm25/title_only/ndcg@10", 0.03),
    ],
    "05_hybrid_recommendation": [
        Floor("rec/valid/SASRec/ndcg@10", "rec/valid/popularity/ndcg@10", -0.01,
              why="SASRec, early-stopped on valid, must beat recommending the most popular items there"),
        Floor("rec/test/SASRec/ndcg@10", "rec/test/popularity/ndcg@10", -0.001,
              why="SASRec must beat recommending the most popular items"),
        Floor("rec/test/EASE/ndcg@10", "rec/test/popularity/ndcg@10", -0.001),
        Floor("rec/test/ItemKNN/ndcg@10", "rec/test/popularity/ndcg@10", -0.001),
        Floor("rec/test/learned_fusion/ndcg@10", "rec/test/popularity/ndcg@10", -0.001),
        Floor("hybrid_search/test/weighted_fusion/ndcg@10", "hybrid_search/test/BM25/ndcg@10", 0.03,
              why="fusing BM25 with the bi-encoder must not lose what BM25 finds"),
        Floor("hybrid_search/test/fine-tuned_bi-encoder/ndcg@10", "hybrid_search/test/BM25/ndcg@10", 0.05),
    ],
    "06_evaluation": [
        *[Floor(f"eval/test/{row}/ndcg@10", "eval/test/in-batch_negatives_only/ndcg@10", 0.05,
                why="one kind of negative added to the in-batch ones must not break training")
          for row in ("plus_uniform_negatives", "plus_popularity_negatives", "plus_dense-hard_negatives",
                      "plus_adversarial_negatives", "full-catalogue_softmax")],
        Floor("curve/test/real_only_all/ndcg@10", "curve/test/real_only_N_0/ndcg@10", 0.02,
              why="training on every real query, selected on valid, must not lose what zero-shot MiniLM finds"),
    ],
    "07_deployment": [
        Floor("deploy/test/hnsw/ndcg@10", "deploy/test/query_encoder_ONNX_int8/ndcg@10", 0.03,
              why="the served HNSW index must find what exact search finds (it is tuned to 95 % recall@10 on valid, "
                  "so at an NDCG@10 near 0.6 a loss of a few hundredths is by design)"),
        Floor("deploy/test/query_encoder_ONNX_int8/ndcg@10", 0.30, why="the served encoder must still search"),
        Floor("deploy/test/service_hybrid/ndcg@10", "deploy/test/service_dense/ndcg@10", 0.02,
              why="fusing BM25 into the served search must not lose what the bi-encoder finds"),
    ],
}


def failures(notebook: str, metrics: dict) -> list[str]:
    """What fails among `notebook`'s floors (empty when all hold)."""
    return [message for floor in FLOORS[notebook] if (message := floor.check(metrics)) is not None]
