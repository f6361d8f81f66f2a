"""Behavioural tests of the packaged search encoder (CheckList-style), on hand-written products."""

import numpy as np
import pytest

from ecomrec.models import behaviour as B

# (query, relevant product, its brand)
CASES = [
    ("cordless drill", "DEWALT 20V MAX Lithium-Ion Cordless Drill/Driver Kit", "DEWALT"),
    ("garden hose", "Flexzilla 5/8 in. x 50 ft. Heavy-Duty Garden Hose", "Flexzilla"),
    ("interior paint white", "Glidden Interior Flat Wall Paint, White, 1 Gal.", "Glidden"),
    ("kitchen faucet", "Moen Single-Handle Pull-Down Sprayer Kitchen Faucet in Stainless Steel", "Moen"),
    ("toilet seat", "Kohler Round Closed Front Toilet Seat in White", "Kohler"),
    ("led shop light", "Lithonia Lighting 4 ft. LED Shop Light", "Lithonia Lighting"),
    ("tape measure", "Stanley 25 ft. Tape Measure", "Stanley"),
    ("framing hammer", "Estwing 22 oz. Framing Hammer", "Estwing"),
    ("ceiling fan", "Hunter 52 in. Indoor Ceiling Fan with Light Kit", "Hunter"),
    ("patio chair", "Hampton Bay Steel Outdoor Patio Dining Chair", "Hampton Bay"),
]


@pytest.fixture(scope="module")
def encoder(minilm):
    return minilm


def test_plural_and_unit_rewrites_keep_the_top_result(encoder):
    titles = [t for _, t, _ in CASES]
    queries = [q for q, _, _ in CASES] + ["25 ft tape measure", "52 inch ceiling fan"]
    checks = B.invariance_checks(encoder, queries, titles + titles[6:7] + titles[8:9], titles)
    plural, units = checks[checks["check"] == "plural"], checks[checks["check"] == "units"]
    assert len(plural) == len(queries) and set(units["variant"]) == {"25 feet tape measure", "52 in. ceiling fan"}
    assert plural["passed"].mean() >= 0.8 and units["passed"].all(), checks[~checks["passed"]]


def test_a_rewrite_check_can_fail():  # a bag-of-words encoder that does not know "drills" is "drill"
    vocabulary = ["cordless", "drill", "drills", "kit", "case"]

    class BagOfWords:
        def encode(self, texts, **kwargs):
            rows = np.array([[float(w in t.split()) for w in vocabulary] for t in texts], dtype=np.float32)
            return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    checks = B.invariance_checks(BagOfWords(), ["cordless drill"], ["cordless drill kit"],
                                 ["cordless drill kit", "cordless drills case"])
    plural = checks[checks["check"] == "plural"].iloc[0]
    assert plural["variant"] == "cordless drills" and plural["rank"] == 1 and plural["variant_rank"] == 2
    assert not plural["passed"]


def test_a_one_letter_typo_rarely_changes_the_top_result(encoder):
    titles = [t for _, t, _ in CASES]
    checks = B.invariance_checks(encoder, [q for q, _, _ in CASES], titles, titles)
    typo = checks[checks["check"] == "typo"]
    assert len(typo) == len(CASES)
    assert (typo["rank"] == 1).all()  # every clean query finds its product first
    assert typo["passed"].mean() >= 0.8, typo[~typo["passed"]]


def test_adding_the_products_brand_does_not_lower_its_score(encoder):
    checks = B.brand_checks(encoder, *map(list, zip(*CASES)))
    assert len(checks) == len(CASES)
    assert checks["passed"].mean() >= 0.9, checks[~checks["passed"]]


def test_minimum_functionality(encoder):
    checks = B.minimum_functionality(encoder)
    assert checks["passed"].all(), checks[~checks["passed"]]


def test_a_checker_can_fail():  # an encoder that ignores its input passes no directional check
    class Constant:
        def encode(self, texts, **kwargs):
            return np.ones((len(texts), 4), dtype=np.float32) / 2

    assert not B.minimum_functionality(Constant())["passed"].any()


def test_checks_with_no_cases_keep_a_boolean_pass_column(encoder):
    # a query whose words have no plural, unit or typo rewrite, and a product whose brand is unknown
    none = B.invariance_checks(encoder, ["a"], ["Stanley 25 ft. Tape Measure"], ["Stanley 25 ft. Tape Measure"])
    no_brand = B.brand_checks(encoder, ["tape measure"], ["Stanley 25 ft. Tape Measure"], [None])
    assert no_brand.empty and no_brand["passed"].dtype == bool
    checks = B.invariance_checks(encoder, [q for q, _, _ in CASES], [t for _, t, _ in CASES], [t for _, t, _ in CASES])
    together = __import__("pandas").concat([none, no_brand, checks], ignore_index=True)
    assert together["passed"].dtype == bool
    assert len(together[~together["passed"]]) == int((~checks["passed"]).sum())  # `~` negates, not -1/-2
