"""Deterministic prompt enhancement: keyword rules, no model."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..request import MAX_PROMPT_CHARS
from .styles import contains_term
from .syntax import close_open_brackets, plain_text


@dataclass(frozen=True)
class _Rule:
    subject: str
    triggers: frozenset[str]
    lighting: str = ""
    composition: str = ""
    detail: str = ""


def _rule(subject: str, triggers: str, lighting: str = "", composition: str = "", detail: str = "") -> _Rule:
    return _Rule(subject, frozenset(triggers.split()), lighting, composition, detail)


# Order matters: at most MAX_SUBJECTS rules apply, the first ones that match.
# No added term may contain a trigger word, so enhancing twice adds nothing.
RULES: tuple[_Rule, ...] = (
    _rule("people", "portrait person people man men woman women girl girls boy boys child children kid "
          "lady gentleman king queen prince princess warrior knight soldier wizard witch astronaut "
          "samurai ninja character selfie", "soft rim lighting", "rule of thirds", "expressive eyes"),
    _rule("animal", "animal animals cat cats kitten dog dogs puppy bird birds horse fox wolf lion tiger owl "
          "bear rabbit deer elephant squirrel parrot", "soft natural lighting", "eye-level shot",
          "lifelike texture"),
    _rule("landscape", "landscape mountain mountains forest woods sea ocean lake river valley beach desert "
          "meadow waterfall island canyon hills glacier jungle", "golden hour lighting", "wide angle vista",
          "atmospheric depth"),
    _rule("place", "city street town village building buildings skyline skyscraper castle temple church "
          "cathedral house bridge interior room ruins palace market", "dramatic lighting",
          "wide establishing shot", "intricate architecture"),
    _rule("food", "food cake pizza ramen burger sushi fruit fruits coffee tea bread soup dessert breakfast "
          "dish meal cookies salad noodles", "soft window light", "close-up shot", "appetizing"),
    _rule("object", "car cars watch bottle shoe shoes phone camera product vehicle motorcycle chair lamp "
          "guitar robot ship boat airplane sword jewelry perfume", "studio lighting",
          "centered composition", "crisp material detail"),
    _rule("night", "night midnight neon moon moonlit", "moody volumetric lighting", "",
          "deep shadows"),
    _rule("shape", "circle circles square squares triangle triangles star stars shape shapes",
          "", "centered composition", "clean edges"),
)
DEFAULT_RULE = _rule("any", "", "soft lighting", "balanced composition", "")
QUALITY_TERMS = ("highly detailed", "sharp focus", "high quality")
MAX_SUBJECTS = 2

# Aspects the user already decided: their words win over ours.
_LIGHTING_WORDS = frozenset("light lights lighting lit backlit backlight sunlight moonlight glow glowing "
                            "illuminated illumination".split())
_COMPOSITION_WORDS = frozenset("shot angle closeup close-up composition framing view vista perspective "
                               "macro aerial panorama panoramic".split())
_CONFLICTS = {
    "sharp focus": frozenset("blur blurry blurred soft-focus bokeh unfocused".split()),
    "highly detailed": frozenset("minimal minimalist minimalistic simple".split()),
}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[\w-]+", plain_text(text).casefold()))


def enhance_prompt(prompt: str) -> str:
    """Add lighting, composition, detail and quality terms to a prompt, by
    fixed keyword rules (no model, no randomness: the same input always gives
    the same output).

    1. The prompt's words (weighting syntax ignored) are matched against
       subject rules, in this order: people, animals, landscapes, places and
       buildings, food, objects and products, night scenes, simple shapes. The
       first two rules that match each contribute a lighting term (e.g.
       "golden hour lighting" for a landscape), a composition term (e.g.
       "close-up shot" for food) and a detail term (e.g. "expressive eyes" for
       people). A prompt no rule matches gets "soft lighting, balanced
       composition".
    2. Quality terms follow: "highly detailed, sharp focus, high quality".
    3. Nothing the user already wrote is repeated (case, punctuation and
       weights ignored: "(sharp focus:1.2)" counts as "sharp focus"); only one
       lighting term is added, and none if the prompt already talks about light
       ("lit", "glow", "sunlight"...); likewise for composition ("shot",
       "angle", "view"...). "sharp focus" is skipped for blurry prompts and
       "highly detailed" for minimalist ones.
    4. The terms are appended after the user's text, comma-separated; the
       user's text and its weighting syntax are kept exactly (an unclosed
       bracket is closed first so the new terms do not inherit its weight).
       Terms are added only while the prompt stays within 2000 characters.

    Enhancing an enhanced prompt adds nothing more.
    """
    user = prompt.strip()
    words = _words(user)
    rules = [r for r in RULES if r.triggers & words][:MAX_SUBJECTS] or [DEFAULT_RULE]

    candidates: list[tuple[str, str]] = []
    for rule in rules:
        candidates += [("lighting", rule.lighting), ("composition", rule.composition), ("detail", rule.detail)]
    candidates += [("quality", term) for term in QUALITY_TERMS]

    base = close_open_brackets(user) if user else ""
    added: list[str] = []
    for aspect, term in candidates:
        if not term:
            continue
        so_far = ", ".join([user] + added)
        present = _words(so_far)
        if contains_term(so_far, term):
            continue
        if aspect == "lighting" and present & _LIGHTING_WORDS:
            continue
        if aspect == "composition" and present & _COMPOSITION_WORDS:
            continue
        if _CONFLICTS.get(term, frozenset()) & present:
            continue
        if len(", ".join([base] + added + [term] if base else added + [term])) > MAX_PROMPT_CHARS:
            break
        added.append(term)
    if not added:
        return prompt
    return ", ".join([base.rstrip(", ")] + added if base.rstrip(", ") else added)
