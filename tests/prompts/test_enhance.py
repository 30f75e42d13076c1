import pytest

from imagestudio.prompts import enhance_prompt, parse_weights
from imagestudio.prompts.enhance import DEFAULT_RULE, QUALITY_TERMS, RULES

PROMPTS = [
    "a cat",
    "portrait of a (woman:1.2) in a forest",
    "a red circle",
    "a bowl of ramen, close-up",
    "a sports car, studio lighting",
    "neon city street at night with robots",
    "a ((dragon)) over an [enchanted] castle BREAK stars",
    "minimalist blurry photo of a lake",
    "",
    "something abstract",
]


def terms(text):
    return [t.strip().lower() for t in text.split(",") if t.strip()]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_enhance_is_deterministic_and_repeats_nothing(prompt):
    once = enhance_prompt(prompt)
    assert once == enhance_prompt(prompt)
    assert enhance_prompt(once) == once  # enhancing twice adds nothing more
    assert len(terms(once)) == len(set(terms(once)))
    assert len(once) > len(prompt) and once.startswith(prompt.strip())


def test_adds_quality_and_subject_terms():
    landscape = enhance_prompt("a lake between mountains")
    assert "golden hour lighting" in landscape
    for term in QUALITY_TERMS:
        assert term in landscape
    assert "close-up shot" in enhance_prompt("a bowl of ramen")
    assert "centered composition" in enhance_prompt("a red circle")


def test_the_users_choices_win():
    prompt = "a cat, (sharp focus:1.2), neon lighting, aerial view"
    out = enhance_prompt(prompt)
    assert out.lower().count("sharp focus") == 1
    assert "soft natural lighting" not in out  # the user chose the lighting
    assert "eye-level shot" not in out  # ... and the point of view
    assert "sharp focus" not in enhance_prompt("a blurry photo of a cat")


def test_weights_are_kept():
    prompt = "a (red:1.3) cat [on grass] ((sky))"
    out = enhance_prompt(prompt)
    assert out.startswith(prompt)
    pieces = parse_weights(out)
    assert ("red", 1.3) in pieces
    assert ("on grass", pytest.approx(1 / 1.1)) in pieces
    assert ("sky", pytest.approx(1.21)) in pieces
    assert pieces[-1][1] == 1.0


def test_added_terms_escape_an_unclosed_bracket():
    out = enhance_prompt("a (cat")
    pieces = parse_weights(out)
    assert pieces[1] == ("cat", pytest.approx(1.1))
    assert "highly detailed" in pieces[-1][0] and pieces[-1][1] == 1.0


def test_stays_within_the_prompt_limit():
    long = ", ".join(["a cat on a boat"] * 120)[:1990]
    out = enhance_prompt(long)
    assert out.startswith(long) and len(out) <= 2000
    assert enhance_prompt("x" * 2000) == "x" * 2000


def test_no_added_term_triggers_another_rule():
    triggers = set().union(*(r.triggers for r in RULES))
    for rule in RULES + (DEFAULT_RULE,):
        for term in (rule.lighting, rule.composition, rule.detail, *QUALITY_TERMS):
            assert not set(term.lower().replace("-", " ").split()) & triggers, term
