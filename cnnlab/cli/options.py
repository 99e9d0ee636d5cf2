"""Option types that check a value where argparse reads it, so a bad value is a usage error
(exit code 2) that names the option, the same in every command."""

from __future__ import annotations

import argparse
import re

__all__ = ["MAX_SIZE", "chw", "non_negative_int", "position"]

MAX_SIZE = 1_000_000  # the largest height, width or channel count accepted


def _whole(text: str, low: int, expected: str) -> int:
    text = text.strip()
    if not re.fullmatch(r"[+-]?\d{1,18}", text) or int(text) < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return int(text)


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (a seed, a padding).

    Example:
        >>> non_negative_int("0"), non_negative_int("7")
        (0, 7)
    """
    return _whole(text, 0, "a whole number >= 0")


def chw(text: str) -> tuple[int, int, int]:
    """A shape written ``CxHxW``: exactly three whole numbers from 1 to ``MAX_SIZE``.

    Example:
        >>> chw("3x32x32")
        (3, 32, 32)
    """
    parts = re.split(r"\s*[x×]\s*", text.strip().lower())
    ok = len(parts) == 3 and all(re.fullmatch(r"\d{1,7}", p) for p in parts)
    sizes = tuple(int(p) for p in parts) if ok else ()
    if not ok or not all(1 <= s <= MAX_SIZE for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected CxHxW (channels x height x width: three whole numbers from 1 to "
            f"{MAX_SIZE:,}, e.g. 3x32x32), got {text!r}"
        )
    return sizes  # type: ignore[return-value]


def position(text: str) -> tuple[int, int, int]:
    """An output position written ``A,ROW,COL``: three whole numbers >= 0.

    Example:
        >>> position("1,0,2")
        (1, 0, 2)
    """
    parts = text.split(",")
    if len(parts) != 3 or not all(re.fullmatch(r"\s*\d{1,9}\s*", p) for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected three whole numbers >= 0 like 0,1,2, got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]
