"""Prompt attention syntax as AUTOMATIC1111 users type it.

    (word)        weight x 1.1            ((word))   x 1.21 (nesting multiplies)
    [word]        weight / 1.1            (word:1.5) exactly 1.5 (times any outer brackets)
    \\( \\) \\[ \\]   literal brackets          BREAK      start a new 75-token chunk

Unbalanced brackets are tolerated the way A1111 tolerates them: an unclosed
bracket applies to the end of the prompt, a stray closing bracket is plain text.
"""

from __future__ import annotations

import re

#: The marker `parse_weights` returns for the BREAK keyword (A1111's convention).
BREAK = ("BREAK", -1.0)

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

_TOKEN = re.compile(
    r"""
      \\\(                      # escaped literals
    | \\\)
    | \\\[
    | \\\]
    | \\\\
    | \\
    | \(
    | \[
    | :\s*([+-]?[.\d]+)\s*\)    # (text:1.5) -- closes a round bracket with an explicit weight
    | \)
    | \]
    | [^\\()\[\]:]+
    | :
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_TRAILING_WEIGHT = re.compile(r":\s*[+-]?[.\d]+\s*$")


def parse_weights(text: str) -> list[tuple[str, float]]:
    """Split `text` into (piece, weight) runs with AUTOMATIC1111 semantics.

    >>> parse_weights("an (important) word")
    [('an ', 1.0), ('important', 1.1), (' word', 1.0)]

    Adjacent runs of equal weight are merged; a BREAK keyword appears as the
    marker ``("BREAK", -1.0)``. An empty prompt gives ``[("", 1.0)]``.
    """
    pieces: list[list] = []  # [text, weight]; mutable while brackets close
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            if piece[1] != BREAK[1]:
                piece[1] *= factor

    for match in _TOKEN.finditer(text):
        token, explicit = match.group(0), match.group(1)
        if token.startswith("\\"):
            pieces.append([token[1:] if len(token) > 1 else token, 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif explicit is not None and round_open and _is_number(explicit):
            multiply_from(round_open.pop(), float(explicit))
        elif explicit is not None and round_open:
            # "(word:1.2.3)": not a weight; keep the text, close the bracket
            pieces.append([token[:-1].rstrip(), 1.0])
            multiply_from(round_open.pop(), ROUND_MULTIPLIER)
        elif token == ")" and round_open:
            multiply_from(round_open.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            multiply_from(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            for i, part in enumerate(_BREAK.split(token)):
                if i > 0:
                    pieces.append(list(BREAK))
                if part:
                    pieces.append([part, 1.0])

    for start in round_open:
        multiply_from(start, ROUND_MULTIPLIER)
    for start in square_open:
        multiply_from(start, SQUARE_MULTIPLIER)

    merged: list[list] = []
    for piece in pieces:
        if merged and merged[-1][1] == piece[1] and piece[1] != BREAK[1]:
            merged[-1][0] += piece[0]
        else:
            merged.append(piece)
    if not merged:
        merged = [["", 1.0]]
    return [(piece_text, weight) for piece_text, weight in merged]


def plain_text(text: str) -> str:
    """The prompt's words without weighting syntax or BREAK (for meaning and
    duplicate checks)."""
    return " ".join(" ".join(t for t, w in parse_weights(text) if w != BREAK[1]).split())


def close_open_brackets(text: str) -> str:
    """Append the closing brackets `text` leaves open, innermost first.

    A1111 applies an unclosed bracket to the end of the prompt; closing it
    keeps every weight of `text` the same while text appended afterwards is
    no longer caught in it.
    """
    stack: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in ("(", "["):
            stack.append(token)
        elif match.group(1) is not None and "(" in stack:
            _pop_last(stack, "(")
        elif token == ")" and "(" in stack:
            _pop_last(stack, "(")
        elif token == "]" and "[" in stack:
            _pop_last(stack, "[")
    if not stack:
        return text
    closers = "".join(")" if b == "(" else "]" for b in reversed(stack))
    if closers[0] == ")" and _TRAILING_WEIGHT.search(text):
        # "(cat:1.3" + ")" would turn the open bracket's 1.1 into 1.3: keep 1.1
        text += ","
    return text + closers


def _pop_last(stack: list[str], bracket: str) -> None:
    # A1111 keeps separate stacks for ( and [; mirror that.
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] == bracket:
            del stack[i]
            return


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
