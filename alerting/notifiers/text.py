"""Fitting text into a receiver's length limits without breaking a character or what the reader sees."""

from __future__ import annotations

import unicodedata

ELLIPSIS = "…"
_ZWJ = "\u200d"


def utf16_len(text: str) -> int:
    """Characters as JavaScript and most JSON APIs count them: an emoji outside the BMP counts twice."""
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def _extends(ch: str) -> bool:
    """Belongs to the character before it: combining marks, joiners, variation selectors, skin tones, tags."""
    code = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Mc", "Me")
        or ch == _ZWJ
        or 0xFE00 <= code <= 0xFE0F
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
    )


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF  # flags are pairs of these


def fit(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` UTF-16 units, else its longest prefix that does, ending in "…".

    Counting UTF-16 units is the stricter of the two ways receivers count (code points or UTF-16), so
    the result fits either way. The cut never separates a letter from its accents, never leaves half
    of a joined emoji or of a flag, and never ends in a lone surrogate (Python strings hold none).
    """
    if limit <= 0:
        return ""
    if utf16_len(text) <= limit:
        return text
    budget = limit - 1  # room for the ellipsis
    used = cut = 0
    for ch in text:
        width = 2 if ord(ch) > 0xFFFF else 1
        if used + width > budget:
            break
        used += width
        cut += 1
    while cut > 0 and (_extends(text[cut]) or text[cut - 1] == _ZWJ):
        cut -= 1
    if cut > 0 and _regional(text[cut - 1]):
        run = 0
        while run < cut and _regional(text[cut - 1 - run]):
            run += 1
        cut -= run % 2  # an odd run ends with half a flag
    return text[:cut].rstrip() + ELLIPSIS
