"""Regional prompts, the text side: which clauses of a prompt name a place.

"a red circle on the left and a blue house on the right" asks one text embedding to say
two things at once, and small models (SD 1.5 often enough too) mix them up: a blue
circle, a red house. A region gives a part of the picture a prompt of its own
(`request.Region`; the engine's `engine.regions` draws it). `auto_regions` finds regions
in an ordinary prompt: clauses that name a place ("on the left", "at the top", "in the
middle") become regions, and the clauses that name none (background, style) are added to
every region's prompt so that each part keeps the whole picture's context.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from ..request import Region

# Tried in this order: "right in the middle" is the center, "top left" a corner.
_PLACES: list[tuple[str, re.Pattern]] = [
    (name, re.compile(pattern, re.IGNORECASE)) for name, pattern in [
        ("top-left", r"\b(top|upper)[ -]left\b"),
        ("top-right", r"\b(top|upper)[ -]right\b"),
        ("bottom-left", r"\b(bottom|lower)[ -]left\b"),
        ("bottom-right", r"\b(bottom|lower)[ -]right\b"),
        ("center", r"\b(center|centre|centered|centred|middle|central)\b"),
        ("top", r"\b(top|upper|above|up high|high up)\b"),
        ("bottom", r"\b(bottom|below|lower|down low|low in)\b"),
        ("left", r"\bleft\b"),
        ("right", r"\bright\b"),
    ]
]
_CLAUSES = re.compile(r"\s*(?:;|,|\band\b|\bBREAK\b)\s*", re.IGNORECASE)


def place_of(clause: str) -> Optional[str]:
    """The named area a clause points at, if any."""
    for name, pattern in _PLACES:
        if pattern.search(clause):
            return name
    return None


def auto_regions(prompt: str) -> list[Region]:
    """Regions read from a prompt's own words: none unless at least two clauses name two
    different places (a single object needs none)."""
    placed: dict[str, str] = {}
    context: list[str] = []
    for clause in filter(None, (c.strip() for c in _CLAUSES.split(prompt))):
        place = place_of(clause)
        if place is None or place in placed:
            context.append(clause)  # a second clause for the same place stays shared context
        else:
            placed[place] = clause
    if len(placed) < 2:
        return []
    tail = ", ".join(context)
    return [Region(prompt=f"{clause}, {tail}" if tail else clause, area=place) for place, clause in placed.items()]


def describe(regions: Sequence[Region]) -> str:
    """One line for the PNG parameters: `left: a red circle | right: a blue house`."""
    return " | ".join(f"{r.where()}: {r.prompt}" for r in regions)
