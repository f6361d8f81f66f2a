"""The course's own progress bars: plain text on stdout.

A notebook page shows stderr as a pink warning box, so a bar there reads as an error; on stdout it is an
ordinary line of output, and `ecomrec.render` keeps only its last state. Bars redraw at most every 15 s,
so an executed notebook keeps a few lines per loop, not thousands.
"""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")
MININTERVAL = 15.0


def progress(iterable: Iterable[T] | None = None, desc: str = "", total: int | None = None,
             disable: bool = False, **kwargs) -> tqdm:
    """A tqdm bar on stdout (not stderr), redrawn at most every 15 s."""
    kwargs.setdefault("mininterval", MININTERVAL)
    return tqdm(iterable, desc=desc, total=total, disable=disable, file=sys.stdout, **kwargs)
