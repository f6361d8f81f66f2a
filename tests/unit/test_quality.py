"""Generated-query quality measures on hand-made cases."""

import numpy as np
import pandas as pd
import pytest
import sacrebleu

from ecomrec.augment import quality as Q


class BagOfLetters:
    """A fake encoder: a query's vector counts its letters, so cosines are easy to compute by hand."""

    def encode(self, texts, batch_size=32, normalize_embeddings=True, **_):
        out = np.zeros((len(texts), 26), np.float32)
        for i, text in enumerate(texts):
            for ch in text.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1) if normalize_embeddings else out

    def get_embedding_dimension(self):
        return 26


def test_words_and_numbers_keep_sizes_whole():
    assert Q.words("Milwaukee 1/2 in. Drill, 2.5-Gal") == ["milwaukee", "1/2", "in", "drill", "2.5-gal"]
    assert Q.numbers("3,000 lb 1/2 in. and 2.5 gal") == {"3000", "1/2", "2.5"}


def test_invented_numbers():
    title = "Husky 1/2 in. Drive 42 in. Breaker Bar"
    assert not Q.invented_numbers("husky 1/2 breaker bar", title)
    assert Q.invented_numbers("husky 3/4 breaker bar", title)
    assert Q.invented_numbers("breaker bar 24", title)
    assert not Q.invented_numbers("breaker bar", title)


def test_copies_title_is_a_contiguous_run():
    title = "Everbilt 3 in. Satin Nickel Door Hinge"
    assert Q.copies_title("satin nickel door hinge", title)
    assert Q.copies_title("Everbilt 3 in. Satin Nickel Door Hinge", title)
    assert not Q.copies_title("nickel satin door hinge", title)  # reordered
    assert not Q.copies_title("satin nickel hinge", title)  # a word skipped
    assert not Q.copies_title("", title)
    assert not Q.copies_title("everbilt 3 in satin nickel door hinge set", title)


def test_distinct_n_by_hand():
    queries = ["led light bulb", "led light", "light bulb"]
    assert Q.distinct_n(queries, 1) == pytest.approx(3 / 7)  # led light bulb led light light bulb
    assert Q.distinct_n(queries, 2) == pytest.approx(2 / 4)  # (led light)×2, (light bulb)×2
    assert np.isnan(Q.distinct_n(["drill"], 2))
    with pytest.raises(ValueError):
        Q.distinct_n(queries, 0)


def test_chrf_matches_sacrebleu_and_takes_the_best_reference():
    queries = ["cordless drill", "paint"]
    refs = [["drill cordless", "cordless drill kit"], ["interior paint white"]]
    out = Q.chrf(queries, refs)
    assert out[0] == pytest.approx(sacrebleu.sentence_chrf("cordless drill", ["cordless drill kit"]).score)
    assert out[1] == pytest.approx(sacrebleu.sentence_chrf("paint", ["interior paint white"]).score)
    assert Q.chrf(["same words"], [["same words"]])[0] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="reference"):
        Q.chrf(["a"], [[]])
    with pytest.raises(ValueError):
        Q.chrf(["a", "b"], [["a"]])


def test_nearest_real_cosine_by_hand():
    encoder = BagOfLetters()
    out = Q.nearest_real_cosine(encoder, ["ab", "ab"], [["ab", "cd"], ["cd", "aab"]])
    # "ab" vs "ab" → 1; "ab" = (1,1) vs "aab" = (2,1): 3 / (sqrt2 sqrt5)
    assert out == pytest.approx([1.0, 3 / np.sqrt(10)])
    with pytest.raises(ValueError):
        Q.nearest_real_cosine(encoder, ["ab"], [[]])


def test_quality_table_one_row_per_generator():
    generated = pd.DataFrame({
        "product_id": [1, 1, 2, 3],
        "title": ["Everbilt 3 in. Door Hinge", "Everbilt 3 in. Door Hinge", "Glacier Bay Toilet", "No references here"],
        "query": ["door hinge", "4 in hinge", "toilet", "anything"],
        "generator": ["a", "a", "b", "b"],
    })
    table = Q.quality_table(generated, {1: ["door hinge 3 in"], 2: ["glacier bay toilet"]}, encoder=BagOfLetters())
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "queries"] == 2 and table.loc["b", "queries"] == 1  # product 3 has no reference
    assert table.loc["a", "copies title"] == 0.5 and table.loc["a", "invented number"] == 0.5
    assert table.loc["b", "copies title"] == 1.0 and table.loc["b", "invented number"] == 0.0
    assert 0 < table.loc["a", "cosine to nearest real"] <= 1
    with pytest.raises(KeyError, match="generator"):
        Q.quality_table(generated.drop(columns="generator"), {1: ["x"]})


def test_nearest_real_cosine_of_no_queries_is_empty():
    assert Q.nearest_real_cosine(BagOfLetters(), [], []).shape == (0,)
