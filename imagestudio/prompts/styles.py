"""Style presets as data (styles.yaml) and the Auto style that picks one from
the prompt's meaning."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional

import yaml

from ..errors import RequestError
from .syntax import close_open_brackets, plain_text

STYLES_FILE = Path(__file__).with_name("styles.yaml")
AUTO = "Auto"
NONE = "None"


@dataclass(frozen=True)
class Style:
    name: str
    description: str
    positive: str  # template containing "{prompt}"
    negative: str
    preview: str  # relative to this package folder; the file may not exist yet

    @property
    def preview_path(self) -> Path:
        return STYLES_FILE.parent / self.preview


class StyledPrompt(NamedTuple):
    prompt: str
    negative: str
    style: Optional[str]  # the style actually applied (Auto resolved), or None


@dataclass(frozen=True)
class _Catalog:
    styles: tuple[Style, ...]
    auto_fallback: str
    auto_threshold: float


@lru_cache(maxsize=1)
def _catalog() -> _Catalog:
    data = yaml.safe_load(STYLES_FILE.read_text(encoding="utf-8"))
    styles = tuple(
        Style(
            name=str(entry["name"]),
            description=" ".join(str(entry.get("description", "")).split()),
            positive=str(entry.get("positive") or "{prompt}"),
            negative=str(entry.get("negative") or ""),
            preview=str(entry.get("preview") or ""),
        )
        for entry in data["styles"]
    )
    return _Catalog(styles, str(data.get("auto_fallback", NONE)), float(data.get("auto_threshold", 0.2)))


def list_styles() -> list[Style]:
    """All presets, in file order (Auto first)."""
    return list(_catalog().styles)


def get_style(name: str) -> Style:
    """The preset called `name` (case-insensitive)."""
    wanted = (name or "").strip().casefold()
    for style in _catalog().styles:
        if style.name.casefold() == wanted:
            return style
    valid = ", ".join(s.name for s in _catalog().styles)
    raise RequestError(f"unknown style {name!r}: choose one of {valid}")


def apply_style(name: str | None, prompt: str, negative: str) -> StyledPrompt:
    """Wrap `prompt` in the style's positive template and add the style's
    negative terms to `negative`.

    None, "" or "none" leaves both unchanged (style None). "Auto" first resolves to
    the style whose description is closest in meaning to the prompt (or to the
    neutral fallback when nothing is close), and `style` names that choice.
    Terms the user already wrote are not repeated.
    """
    if name is None or name.strip().casefold() in ("", NONE.casefold()):
        return StyledPrompt(prompt, negative, None)
    style = get_style(name)
    if style.name == AUTO:
        style = get_style(choose_style(prompt))
    if style.name == NONE:  # Auto found nothing close: keep the text exactly
        return StyledPrompt(prompt, negative, NONE)
    return StyledPrompt(
        _fill_template(style.positive, prompt),
        merge_terms(negative, style.negative),
        style.name,
    )


def choose_style(prompt: str) -> str:
    """The name of the style Auto picks for `prompt`: the highest cosine
    similarity between the prompt's sentence embedding and each style's
    description, or the catalog's neutral fallback below the threshold."""
    catalog = _catalog()
    text = plain_text(prompt)
    candidates = [s for s in catalog.styles if s.name not in (AUTO, NONE)]
    if not text or not candidates:
        return catalog.auto_fallback
    scores = _description_vectors() @ _embed([text])[0]
    best = int(scores.argmax())
    if float(scores[best]) < catalog.auto_threshold:
        return catalog.auto_fallback
    return candidates[best].name


def _embed(texts):
    from .meaning import embed

    return embed(texts)


@lru_cache(maxsize=1)
def _description_vectors():
    candidates = [s for s in _catalog().styles if s.name not in (AUTO, NONE)]
    return _embed([f"{s.name}: {s.description}" for s in candidates])


# -- text helpers ---------------------------------------------------------

def _terms(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", plain_text(text).casefold()).split())


def contains_term(text: str, term: str) -> bool:
    """Whether `term` already appears in `text` as whole words, ignoring
    case, punctuation and weighting syntax ("(sharp focus:1.2)" has "sharp focus")."""
    needle = _normalise(term)
    return bool(needle) and f" {needle} " in f" {_normalise(text)} "


def merge_terms(text: str, extra: str) -> str:
    """`text` followed by each comma-separated term of `extra` it lacks."""
    added: list[str] = []
    for term in _terms(extra):
        if not contains_term(text, term) and not any(contains_term(a, term) for a in added):
            added.append(term)
    base = text.strip().rstrip(",").strip()
    return ", ".join([base] + added if base else added)


def _fill_template(template: str, prompt: str) -> str:
    """Put `prompt` into the template; template terms the prompt already
    contains are dropped, and empty prompts leave no stray commas."""
    if "{prompt}" not in template:
        template = "{prompt}, " + template
    before, after = template.split("{prompt}", 1)
    user = prompt.strip()

    def keep(fragment: str) -> str:
        kept = [t for t in _terms(fragment) if not contains_term(user, t)]
        return ", ".join(kept)

    # text glued to the prompt with no comma ("anime artwork of {prompt}") stays whole
    lead_terms = before.rstrip()
    if lead_terms.endswith(",") or not lead_terms:
        prefix = keep(before)
        prefix = prefix + ", " if prefix and user else prefix
    else:
        head, _, glued = before.rpartition(",")
        kept_head = keep(head)
        glued = "" if contains_term(user, glued) else glued.strip()
        prefix = (kept_head + ", " if kept_head else "") + glued + (" " if user and glued else "")
    suffix = keep(after)
    if suffix:
        user = close_open_brackets(user)  # keep the style's words out of an unclosed "("
    joiner = ", " if suffix and (user or prefix.strip()) else ""
    return (prefix + user + joiner + suffix).strip().strip(",").strip()
