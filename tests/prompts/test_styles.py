import pytest

from imagestudio.errors import RequestError
from imagestudio.prompts import apply_style, get_style, list_styles, parse_weights

REQUIRED = ["Auto", "3D Anime", "3D Model", "Japanese Anime", "Movie", "Comic", "Cyberpunk", "Fantasy"]


def test_every_required_style_is_listed_with_templates():
    styles = {s.name: s for s in list_styles()}
    assert set(REQUIRED) <= set(styles)
    for style in styles.values():
        assert style.description.strip()
        assert "{prompt}" in style.positive
        assert style.preview.startswith("styles/") and style.preview.endswith(".png")


@pytest.mark.parametrize("name, words", [
    ("Comic", ["comic style, bold outlines"]),
    ("Cyberpunk", ["neon glow"]),
    ("Japanese Anime", ["pastel colors", "anime"]),
    ("3D Anime", ["pastel colors", "anime"]),
    ("3D Model", ["3d shaded render"]),
    ("Movie", ["cinematic", "sunset"]),
    ("Fantasy", ["fantasy", "night"]),
])
def test_templates_use_words_the_embedded_model_knows(name, words):
    styled = apply_style(name, "a red circle", "")
    assert styled.style == name
    for phrase in words:
        assert phrase in styled.prompt


def test_names_are_case_insensitive():
    assert get_style("cyberPUNK").name == "Cyberpunk"
    assert get_style(" japanese anime ").name == "Japanese Anime"


def test_unknown_style_is_a_request_error_naming_the_valid_ones():
    with pytest.raises(RequestError) as caught:
        get_style("Watercolour")
    message = str(caught.value)
    assert "Watercolour" in message
    for name in REQUIRED:
        assert name in message
    with pytest.raises(RequestError):
        apply_style("Watercolour", "a cat", "")


@pytest.mark.parametrize("name", [None, "", "none", "None"])
def test_no_style_leaves_the_prompt_alone(name):
    assert tuple(apply_style(name, " a (red:1.3) cat ", "blurry")) == (" a (red:1.3) cat ", "blurry", None)


def test_style_wraps_the_prompt_and_keeps_its_weights():
    styled = apply_style("Comic", "a (red:1.3) cat [on grass]", "blurry, ugly")
    assert "a (red:1.3) cat [on grass]" in styled.prompt
    assert ("red", 1.3) in parse_weights(styled.prompt)
    # style negatives are appended, comma-joined, without repeating "blurry"
    assert styled.negative.startswith("blurry, ugly, ")
    terms = [t.strip().lower() for t in styled.negative.split(",")]
    assert len(terms) == len(set(terms)) and "photo" in terms


def test_negative_has_no_leading_comma_and_prompt_no_stray_commas():
    styled = apply_style("Cyberpunk", "", "")
    assert not styled.negative.startswith(",") and not styled.prompt.startswith(",")
    assert ", ," not in styled.prompt and not styled.prompt.endswith(",")


def test_style_terms_the_user_wrote_are_not_repeated():
    styled = apply_style("Comic", "a superhero, (bold outlines:1.2)", "PHOTO")
    assert styled.prompt.lower().count("bold outlines") == 1
    assert styled.negative.lower().count("photo") == 1


def test_style_terms_do_not_fall_into_an_unclosed_bracket():
    styled = apply_style("Cyberpunk", "a (city street", "")
    weights = dict(parse_weights(styled.prompt))
    assert any(w == pytest.approx(1.1) for w in weights.values())
    assert [w for t, w in parse_weights(styled.prompt) if "neon glow" in t] == [1.0]


@pytest.mark.parametrize("prompt, expected", [
    ("neon city street at night with robots", "Cyberpunk"),
    ("a dragon over an enchanted castle", "Fantasy"),
    ("a wizard casting a spell", "Fantasy"),
    ("a superhero punching a villain", "Comic"),
    ("anime girl in school uniform under cherry blossoms", "Japanese Anime"),
    ("a cute chibi cat mascot", "3D Anime"),
    ("a cowboy riding into the sunset", "Movie"),
    ("(neon city:1.3) street at [night] with ((robots))", "Cyberpunk"),
])
def test_auto_picks_the_style_that_matches_the_meaning(prompt, expected):
    styled = apply_style("Auto", prompt, "")
    assert styled.style == expected
    assert styled.prompt == apply_style(expected, prompt, "").prompt


def test_auto_falls_back_to_no_style_when_nothing_fits():
    styled = apply_style("auto", "a green triangle and a yellow star", "blurry")
    assert tuple(styled) == ("a green triangle and a yellow star", "blurry", "None")
    assert apply_style("Auto", "", "").style == "None"


@pytest.mark.parametrize("name", [s.name for s in list_styles() if s.name not in ("Auto", "None")])
@pytest.mark.parametrize("prompt", ["a (red:1.3) cat", "", "a (city street", "comic book, a cat"])
def test_applying_a_style_twice_changes_nothing_more(name, prompt):
    # a prompt read back from an image's metadata may already carry its style
    once = apply_style(name, prompt, "blurry")
    assert apply_style(name, once.prompt, once.negative) == once
