import gzip
import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "recbole_reference.py"


def test_convert_writes_recbole_atomic_rows_in_file_order(tmp_path):
    spec = importlib.util.spec_from_file_location("recbole_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = tmp_path / "data" / module.SOURCE
    source.parent.mkdir(parents=True)
    reviews = [{"reviewerID": "U1", "asin": "B2", "overall": 5.0, "unixReviewTime": 100},
               {"reviewerID": "U1", "asin": "B1", "overall": 4.0, "unixReviewTime": 100}]  # a same-day tie
    with gzip.open(source, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in reviews)
    inter = module.convert(tmp_path / "data", tmp_path / "work")
    assert inter.read_text().splitlines() == ["user_id:token\titem_id:token\trating:float\ttimestamp:float",
                                              "U1\tB2\t5.0\t100", "U1\tB1\t4.0\t100"]  # file order kept
