import numpy as np
import pytest

from ecomrec.augment.attributes import BrandLexicon, differing_attributes, parse_attributes, swap_attribute

TITLES = [
    "Simpson Strong-Tie 12-Gauge Angle",
    "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Chrome (Valve Not Included)",
    "John Deere 46 in. x 44 in. Black Riding Mower Cover for 100 - X300 Series",
    "SharkBite 1 in. x 3/4 in. Plastic PEX Barb Reducer Coupling (5-Pack)",
    "Officemate Clipboard, Letter Size, 3 pack (83130)",
    "Sparco Steel Mesh Pencil Cup - Black",
    "Werner 12 ft., 25 in. x 66 in. Aluminum Attic Ladder with 375 lb. Maximum Load Capacity",
    "Whirlpool 6.2 cu. ft. Slide-In Electric Range in Stainless Steel",
]
BRANDS = BrandLexicon(known={"simpson strong-tie", "delta vero", "john deere", "sharkbite", "sparco", "werner",
                             "whirlpool", "officemate"})


def test_parse_examples():
    attrs = parse_attributes(TITLES[2], BRANDS)
    assert (attrs.brand, attrs.product_type, attrs.size, attrs.colour) == ("John Deere", "riding mower cover", "46 in.", "Black")
    assert parse_attributes(TITLES[3], BRANDS).count == "5"
    assert parse_attributes(TITLES[4], BRANDS).count == "3"
    assert parse_attributes(TITLES[1], BRANDS).product_type == "faucet trim kit"
    assert parse_attributes(TITLES[6], BRANDS).product_type == "aluminum attic ladder"


def test_brand_lexicon_learns_frequent_prefixes():
    titles = [f"Hampton Bay {i}-Light Fixture" for i in range(12)] + ["Hampton Court Chair"] * 3
    lexicon = BrandLexicon(min_products=10).fit(titles)
    assert lexicon.find("Hampton Bay Ceiling Fan") == "Hampton Bay"
    assert lexicon.find("Hampton Court Chair") == "Hampton"  # the one-word prefix starts 15 titles
    assert lexicon.find("Acme Court Chair") == ""


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("title", TITLES)
def test_swap_changes_exactly_one_attribute(title, seed):
    swapped = swap_attribute(title, np.random.default_rng(seed), BRANDS)
    assert swapped is not None
    new_title, name = swapped
    assert new_title != title
    assert differing_attributes(parse_attributes(title, BRANDS), parse_attributes(new_title, BRANDS)) == [name]


def test_swap_without_attributes_returns_none():
    assert swap_attribute("Thing", np.random.default_rng(0), BrandLexicon()) is None
