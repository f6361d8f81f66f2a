import numpy as np
import pandas as pd

from ecomrec.augment.sequences import MASK_ITEM, augment_sequences, cold_item_interactions, crop, mask, reorder

SEQ = list("abcdefghij")


def test_crop_is_contiguous_with_expected_length():
    for seed in range(20):
        out = crop(SEQ, np.random.default_rng(seed), ratio=0.6)
        assert len(out) == 6 and "".join(out) in "".join(SEQ)


def test_mask_replaces_exactly_floor_ratio_n():
    out = mask(SEQ, np.random.default_rng(1), ratio=0.3)
    assert out.count(MASK_ITEM) == 3
    assert [a for a, b in zip(SEQ, out) if b != MASK_ITEM] == [b for b in out if b != MASK_ITEM]


def test_reorder_permutes_one_window_only():
    for seed in range(20):
        out = reorder(SEQ, np.random.default_rng(seed), ratio=0.3)
        assert sorted(out) == SEQ
        changed = [i for i, (a, b) in enumerate(zip(SEQ, out)) if a != b]
        assert not changed or changed[-1] - changed[0] < 3


def test_augment_sequences_counts_and_seed():
    events = pd.DataFrame({"user_id": ["u"] * 5 + ["v"] * 2, "item_id": list("abcde") + list("xy"), "timestamp": range(7)})
    out = augment_sequences(events, views=4, rng=np.random.default_rng(0))
    assert (out["method"] == "none").sum() == 2 and len(out) == 2 + 4  # v is too short to augment
    assert out.equals(augment_sequences(events, views=4, rng=np.random.default_rng(0)))


def test_cold_item_borrows_users_of_similar_warm_items():
    # items: w1 and w2 warm; c cold, content-identical to w1
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    events = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4", "u5", "u6"],
                           "item_id": ["w1", "w1", "w1", "w2", "w2", "c"], "timestamp": [1, 2, 3, 4, 5, 6]})
    out = cold_item_interactions(events, ["w1", "w2", "c"], emb, max_interactions=1, neighbours=1, per_item=2)
    assert set(out["item_id"]) == {"c"} and set(out["source_item"]) == {"w1"}
    assert set(out["user_id"]) <= {"u1", "u2", "u3"} and len(out) == 2
    assert out["similarity"].eq(1.0).all()
