import pandas as pd
import pytest

from ecomrec.data.errors import SchemaError
from ecomrec.data.schema import JUDGMENTS, Col, Schema, check_frame, check_references

TOY = Schema("toy", (Col("id", "int", min=0), Col("name", "str", nonempty=True), Col("score", "float", min=1, max=3)), key=("id",))


def good():
    return pd.DataFrame({"id": [1, 2], "name": ["a", "b"], "score": [1.0, 3.0]}).astype({"name": "str"})


def test_valid_frame_passes_through():
    frame = good()
    assert check_frame(frame, TOY) is frame


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.drop(columns="score"), "missing columns"),
    (lambda f: f.assign(id=["1", "2"]), "dtype"),
    (lambda f: f.assign(score=[0.5, 2.0]), "below 1"),
    (lambda f: f.assign(score=[1.0, 3.5]), "above 3"),
    (lambda f: f.assign(score=[1.0, None]), "nulls"),
    (lambda f: f.assign(id=[1, 1]), "duplicate rows"),
    (lambda f: f.assign(name=["a", ""]), "empty strings"),
])
def test_violations_are_reported(mutate, message):
    with pytest.raises(SchemaError, match=message):
        check_frame(mutate(good()), TOY)


def test_all_violations_listed_together():
    bad = good().assign(id=[1, 1], score=[0.0, 9.0])
    with pytest.raises(SchemaError) as err:
        check_frame(bad, TOY)
    assert "below" in str(err.value) and "above" in str(err.value) and "duplicate" in str(err.value)


def test_references():
    parent = pd.DataFrame({"id": [1, 2]})
    check_references(pd.DataFrame({"id": [1, 2, 2]}), "id", parent, "id", "ok")
    with pytest.raises(SchemaError, match=r"1 rows reference unknown id \(e.g. \[7\]\)"):
        check_references(pd.DataFrame({"id": [1, 7]}), "id", parent, "id", "child→parent")


def test_judgment_relevance_range():
    frame = pd.DataFrame({"query_id": [0], "product_id": [1], "relevance": [4.0], "n_judgments": [1]})
    with pytest.raises(SchemaError, match="relevance"):
        check_frame(frame, JUDGMENTS)
