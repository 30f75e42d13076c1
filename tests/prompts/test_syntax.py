import pytest

from imagestudio.prompts import BREAK, parse_weights
from imagestudio.prompts.syntax import close_open_brackets, plain_text


def approx(pairs):
    return [(text, pytest.approx(weight)) for text, weight in pairs]


@pytest.mark.parametrize("text, expected", [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("((word))", [("word", 1.21)]),
    ("[word]", [("word", 1 / 1.1)]),
    ("[[word]]", [("word", 1 / 1.21)]),
    ("(word:1.5)", [("word", 1.5)]),
    ("a (word: 0.25 ) b", [("a ", 1.0), ("word", 0.25), (" b", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("unbalanced)", [("unbalanced)", 1.0)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", [
        ("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
        (", sun, ", 1.1), ("sky", 1.4641), (".", 1.1)]),
    ("", [("", 1.0)]),
])
def test_a1111_examples(text, expected):
    assert parse_weights(text) == approx(expected)


def test_nesting_multiplies_explicit_weights():
    assert parse_weights("((cat:2))") == approx([("cat", 2.2)])
    assert parse_weights("[(cat:2)]") == approx([("cat", 2 / 1.1)])


def test_break_starts_a_new_chunk_marker():
    assert parse_weights("a red circle BREAK (blue) square") == approx(
        [("a red circle", 1.0), BREAK, ("blue", 1.1), (" square", 1.0)])
    # BREAK must be a whole upper-case word
    assert parse_weights("breakfast, Break") == [("breakfast, Break", 1.0)]


def test_malformed_weight_is_text_not_a_crash():
    assert parse_weights("(cat:1.2.3) dog") == approx([("cat:1.2.3", 1.1), (" dog", 1.0)])
    assert parse_weights("ratio 16:9") == [("ratio 16:9", 1.0)]


def test_plain_text_drops_syntax():
    words = plain_text("a ((red:1.2)) [cat] BREAK on grass").split()
    assert words == ["a", "red", "cat", "on", "grass"]


@pytest.mark.parametrize("text", ["a (cat", "a [(cat", "a ([cat", "a (cat:1.3", "((a) b", "a (b) c"])
def test_closing_open_brackets_keeps_every_weight(text):
    closed = close_open_brackets(text)
    assert closed.startswith(text)
    after = parse_weights(closed + "(tail:0.5)")
    assert [w for _, w in after[:-1]] == [w for _, w in parse_weights(text)]
    assert after[-1] == ("tail", 0.5)
