"""Online updates of popularity and ItemKNN equal a refit on all events, without re-reading old ones."""

import numpy as np
import pandas as pd
import pytest

from ecomrec import config as C
from ecomrec.recommend import models as M

ITEMS = ["a", "b", "c", "d", "e", "f"]


def events(pairs, start=0):
    return pd.DataFrame([(u, i, start + t) for t, (u, i) in enumerate(pairs)],
                        columns=[C.COL_USER, C.COL_ITEM, C.COL_TIMESTAMP])


OLD = events([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c"), ("u3", "d"), ("u3", "a")])
# a repeat (u1, a), a new item for an old user, two items for a new user, and a same-batch pair for u2
NEW = events([("u1", "a"), ("u1", "e"), ("u4", "e"), ("u4", "f"), ("u2", "f"), ("u2", "b")], start=100)


@pytest.mark.parametrize("cls", [M.Popularity, lambda items: M.ItemKNN(items, shrinkage=1.0, neighbours=3)])
def test_update_equals_a_refit(cls):
    updated = cls(ITEMS).fit(OLD).update(NEW)
    refit = cls(ITEMS).fit(pd.concat([OLD, NEW], ignore_index=True))
    users = ["u1", "u2", "u3", "u4"]
    assert np.allclose(updated.scores(users), refit.scores(users))
    pd.testing.assert_frame_equal(updated.recommend(users, k=3), refit.recommend(users, k=3))
    assert updated.histories["u1"] == ["a", "b", "a", "e"] and updated.histories["u4"] == ["e", "f"]


def test_itemknn_co_occurrence_counts_by_hand():
    model = M.ItemKNN(ITEMS).fit(OLD).update(NEW)
    co = pd.DataFrame(model.co, index=ITEMS, columns=ITEMS)
    assert co.loc["e", "e"] == 2 and co.loc["e", "f"] == 1  # u1 and u4 met e; u4 met e and f
    assert co.loc["a", "e"] == co.loc["e", "a"] == 1  # u1's old a with its new e, once despite the repeat
    assert co.loc["b", "f"] == 1 and co.loc["c", "b"] == 1  # u2's two new items meet each other and u2's c


def test_recommendations_change_after_new_interactions():
    model = M.ItemKNN(ITEMS, shrinkage=0.0).fit(OLD)
    before = model.recommend(["u3"], k=1)[C.COL_ITEM].tolist()
    model.update(events([("u5", "d"), ("u5", "f"), ("u6", "d"), ("u6", "f"), ("u7", "d"), ("u7", "f")], start=200))
    after = model.recommend(["u3"], k=1)[C.COL_ITEM].tolist()
    assert before != after == ["f"]  # f now co-occurs with u3's d more than anything else


def test_update_rejects_unknown_items():
    model = M.Popularity(ITEMS).fit(OLD)
    with pytest.raises(ValueError, match="outside the catalogue"):
        model.update(events([("u1", "zzz")]))
