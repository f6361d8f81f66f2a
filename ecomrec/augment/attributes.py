"""Parse product attributes (brand, type, size, count, colour) from titles, and swap one of them.

The parser is a transparent baseline: regular expressions and a brand lexicon learned from the
catalogue itself (title prefixes shared by many products). Templates (`generators.TemplateGenerator`)
and adversarial near-miss negatives (`negatives.attribute_swap_negatives`) are built on it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, fields

import numpy as np

COLOURS = (
    "white", "black", "chrome", "brushed nickel", "satin nickel", "nickel", "bronze", "oil rubbed bronze",
    "stainless steel", "brass", "polished brass", "copper", "gold", "silver", "gray", "grey", "red", "blue",
    "green", "yellow", "orange", "purple", "pink", "brown", "beige", "tan", "ivory", "almond", "espresso",
    "cherry", "walnut", "oak", "mahogany", "clear", "bisque", "biscuit", "navy", "teal",
)
UNITS = r"(?:in\.|ft\.|gal\.|oz\.|lb\.|qt\.|cu\. ft\.|sq\. ft\.|mm|cm|watt|volt|amp|btu|gauge|inch(?:es)?|feet|liter|ml)"
_SIZE = re.compile(r"(?<![\w./-])(\d+(?:[-/.]\d+)*)[ -]?(" + UNITS + r")(?![\w])", re.I)
_COUNT = re.compile(r"(?<![\w.])(\d+)[ -]?(pack|pk|count|ct|piece|pc)\b|\bpack of (\d+)\b|\bset of (\d+)\b|(\d+)\s*(?:/|per )\s*pack\b", re.I)
_COLOUR = re.compile(r"\b(" + "|".join(sorted((re.escape(c) for c in COLOURS), key=len, reverse=True)) + r")\b", re.I)
_STOP_TAIL = re.compile(r"\s(?:in|with|for|by|-)\s.*$", re.I)
_NOISE = re.compile(r"\(.*?\)|#\S+|\S*\d\S*", re.I)
_NOT_TYPE = {"in", "ft", "x", "gal", "oz", "lb", "qt", "cu", "sq", "w", "d", "h", "l", "dia", "mm", "cm", "pack", "pk",
             "count", "ct", "piece", "pc", "set", "of", "per", "inch", "inches", "feet", "gauge", "watt", "volt", "amp"}


@dataclass(frozen=True)
class Attributes:
    """What a title says about a product; empty strings where it says nothing."""

    brand: str = ""
    product_type: str = ""
    size: str = ""
    count: str = ""
    colour: str = ""


class BrandLexicon:
    """Brands as the longest title prefix (1–3 words) that starts at least `min_products` titles."""

    def __init__(self, min_products: int = 10, known: set[str] | None = None):
        self.min_products = min_products
        self.brands: set[str] = {b.lower() for b in (known or set())}

    def fit(self, titles: list[str]) -> "BrandLexicon":
        counts = Counter(" ".join(t.lower().split()[:n]) for t in titles for n in (1, 2, 3) if len(t.split()) > n)
        self.brands |= {p for p, c in counts.items() if c >= self.min_products and not re.search(r"\d", p)
                        and not _COLOUR.search(p) and p.split()[-1] not in _NOT_TYPE}
        return self

    def find(self, title: str) -> str:
        words = title.split()
        for n in (3, 2, 1):
            prefix = " ".join(words[:n])
            if len(words) > n and prefix.lower() in self.brands:
                return prefix
        return ""


def parse_attributes(title: str, brands: BrandLexicon | None = None) -> Attributes:
    """Extract brand, product type (the head noun phrase), size, count and colour from one title."""
    brand = brands.find(title) if brands else ""
    size = _SIZE.search(title)
    count = _COUNT.search(title)
    colour = _COLOUR.search(title)
    head = _COUNT.sub(" ", _SIZE.sub(" ", title[len(brand):]))
    words: list[str] = []
    for segment in _NOISE.sub(" ", _COLOUR.sub(" ", head)).split(","):  # the first comma part that names a thing
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]*", _STOP_TAIL.sub("", segment)) if w.lower() not in _NOT_TYPE]
        if words:
            break
    return Attributes(
        brand=brand,
        product_type=" ".join(words[-3:]).lower() if words else "",
        size=size.group(0) if size else "",
        count=next(g for g in count.groups() if g and g.isdigit()) if count else "",
        colour=colour.group(0) if colour else "",
    )


def _replace_span(text: str, span: tuple[int, int], new: str) -> str:
    return text[:span[0]] + new + text[span[1]:]


def _candidates(title: str, name: str, attrs: Attributes, brands: BrandLexicon | None, rng: np.random.Generator) -> list[str]:
    """Titles with attribute `name` replaced by other values, in random order."""
    lower = title.lower()
    if name == "colour":
        match = _COLOUR.search(title)
        options = [c for c in COLOURS if c not in lower and c not in match.group(0).lower() and match.group(0).lower() not in c]
        values = [c.title() if match.group(0)[:1].isupper() else c for c in options]
        return [_replace_span(title, match.span(), v) for v in rng.permutation(values)]
    if name in ("size", "count"):
        match = (_SIZE if name == "size" else _COUNT).search(title)
        digits = re.search(r"\d+", match.group(0))
        number = int(digits.group(0))
        deltas = [d for d in rng.permutation([-3, -2, -1, 1, 2, 3, 6]) if number + d > 0]
        return [_replace_span(title, (match.start() + digits.start(), match.start() + digits.end()), str(number + d))
                for d in deltas]
    options = sorted(b for b in (brands.brands if brands else set()) if b != attrs.brand.lower() and len(b.split()) <= 2)
    return [title.replace(attrs.brand, str(b).title(), 1) for b in rng.permutation(options)[:20]]


def swap_attribute(title: str, rng: np.random.Generator, brands: BrandLexicon | None = None,
                   prefer: tuple[str, ...] = ("colour", "size", "count", "brand")) -> tuple[str, str] | None:
    """Change exactly one attribute of `title` (a random one it has); return (new title, attribute name).

    Colours become another colour, sizes and counts another number, brands another known brand. Each
    candidate is re-parsed and kept only if exactly that one attribute differs; None if no candidate is.
    """
    attrs = parse_attributes(title, brands)
    present = [name for name in prefer if getattr(attrs, name)]
    for name in rng.permutation(present):
        for candidate in _candidates(title, str(name), attrs, brands, rng):
            if differing_attributes(attrs, parse_attributes(candidate, brands)) == [name]:
                return candidate, str(name)
    return None


def differing_attributes(a: Attributes, b: Attributes) -> list[str]:
    """Names of the fields in which two parses differ."""
    return [f.name for f in fields(Attributes) if getattr(a, f.name).lower() != getattr(b, f.name).lower()]
