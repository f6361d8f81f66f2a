"""Our dense hard-negative miner (which reuses precomputed catalogue embeddings) must pick the same
negatives as sentence-transformers' `mine_hard_negatives` with an absolute margin, on the real encoder."""

import numpy as np
import pytest
from datasets import Dataset

from ecomrec.augment.negatives import dense_hard_negatives
from ecomrec.models.encoders import load_minilm
from ecomrec.models.search import DenseIndex, encode

CORPUS = ["Milwaukee M18 Cordless Drill Driver Kit", "DEWALT 20V MAX Cordless Drill", "Ryobi 18V Impact Driver",
          "Husky Claw Hammer 16 oz.", "Estwing Framing Hammer 22 oz.", "Stanley Tape Measure 25 ft.",
          "Glidden Interior Paint White 1 gal.", "BEHR Exterior Paint Deep Base 1 gal.", "Purdy Paint Brush 2 in.",
          "Rain Bird Garden Hose Nozzle", "Flexzilla Garden Hose 50 ft.", "Moen Kitchen Faucet Chrome",
          "Delta Bathroom Faucet Brushed Nickel", "Kohler Toilet Seat White", "Lithonia LED Shop Light 4 ft."]
PAIRS = [("cordless drill", 1), ("claw hammer", 3), ("interior paint", 6), ("garden hose", 10), ("kitchen faucet", 11)]


@pytest.mark.parametrize("margin", [0.0, 0.05, 0.2])
def test_same_negatives_as_sentence_transformers(margin):
    from sentence_transformers.util import mine_hard_negatives

    model = load_minilm("cpu")
    queries = [q for q, _ in PAIRS]
    positives = [CORPUS[i] for _, i in PAIRS]
    theirs = mine_hard_negatives(Dataset.from_dict({"query": queries, "positive": positives}), model, corpus=CORPUS,
                                 absolute_margin=margin, num_negatives=1, sampling_strategy="top", range_max=10,
                                 output_format="triplet", verbose=False)
    corpus_embeddings = encode(model, CORPUS, bf16=False)  # float32, as sentence-transformers' miner
    ours = dense_hard_negatives(encode(model, queries, bf16=False), corpus_embeddings[[i for _, i in PAIRS]],
                                [{i} for _, i in PAIRS], DenseIndex(np.arange(len(CORPUS)), corpus_embeddings),
                                n=1, margin=margin, depth=10)
    ours_text = {q: CORPUS[row[0]] for q, row in zip(queries, ours) if row}
    assert dict(zip(theirs["query"], theirs["negative"])) == ours_text
    assert len(ours_text) >= 3
