"""Prompt embeddings on real (tiny) pipelines: a CLIP text encoder with random
weights and the real all-MiniLM-L6-v2 BertModel the embedded model uses."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from imagestudio.prompts import encode_prompts

WINDOW = 77


def reference(pipe, prompt, negative):
    return pipe.encode_prompt(prompt, torch.device("cpu"), 1, True, negative)


@pytest.mark.parametrize("pipe_name", ["tiny_pipe", "minilm_pipe"])
@pytest.mark.parametrize("prompt, negative", [
    ("a red circle on the left", "blurry, ugly"),
    ("a cat", ""),
    ("", ""),
])
def test_plain_prompt_equals_the_pipelines_own_encoding(request, pipe_name, prompt, negative):
    pipe = request.getfixturevalue(pipe_name)
    ours = encode_prompts(pipe, prompt, negative)
    theirs = reference(pipe, prompt, negative)
    for mine, expected in zip(ours, theirs):
        assert mine.shape == expected.shape == (1, WINDOW, pipe.text_encoder.config.hidden_size)
        assert torch.equal(mine, expected)


def token_position(pipe, prompt, word):
    ids = pipe.tokenizer(prompt).input_ids
    return ids.index(pipe.tokenizer(word, add_special_tokens=False).input_ids[0])


@pytest.mark.parametrize("pipe_name", ["tiny_pipe", "minilm_pipe"])
def test_a_weight_scales_only_its_words_embedding(request, pipe_name):
    pipe = request.getfixturevalue(pipe_name)
    plain, _ = encode_prompts(pipe, "a red circle on the sky", "")
    weighted, _ = encode_prompts(pipe, "a (red:1.5) circle on the sky", "")
    red = token_position(pipe, "a red circle on the sky", "red")

    assert not torch.allclose(weighted[0, red], plain[0, red])
    others = [i for i in range(WINDOW) if i != red]
    # every other token keeps its embedding up to the one factor that restores the mean
    factor = weighted[0, others].flatten() @ plain[0, others].flatten() / plain[0, others].pow(2).sum()
    torch.testing.assert_close(weighted[0, others], plain[0, others] * factor)
    torch.testing.assert_close(weighted[0, red], plain[0, red] * factor * 1.5)
    # ... and that factor keeps the chunk's mean where it was
    torch.testing.assert_close(weighted.mean(), plain.mean())


def test_brackets_weigh_like_a1111(tiny_pipe):
    plain, _ = encode_prompts(tiny_pipe, "a red circle", "")
    red = token_position(tiny_pipe, "a red circle", "red")
    for prompt, weight in [("a (red) circle", 1.1), ("a ((red)) circle", 1.21), ("a [red] circle", 1 / 1.1)]:
        emb, _ = encode_prompts(tiny_pipe, prompt, "")
        ratio = (emb[0, red] / plain[0, red]) / (emb[0, 1] / plain[0, 1])
        torch.testing.assert_close(ratio, torch.full_like(ratio, weight))


def words(n):
    vocab = "red blue circle square star house sun boat cat dog sea grass snow sky night flower".split()
    return " ".join(vocab[i % len(vocab)] for i in range(n))


def test_long_prompt_is_encoded_in_chunks_not_cut(tiny_pipe):
    prompt = words(120)  # one token per word with the tiny tokenizer
    assert len(tiny_pipe.tokenizer(prompt).input_ids) == 122
    emb, neg = encode_prompts(tiny_pipe, prompt, "blurry")
    assert emb.shape == neg.shape == (1, 2 * WINDOW, 32)
    # the first chunk is the first 75 tokens, encoded exactly as the pipeline would
    first_75 = " ".join(prompt.split()[:75])
    torch.testing.assert_close(emb[:, :WINDOW], reference(tiny_pipe, first_75, "")[0], rtol=0, atol=0)

    # the second half reaches the embeddings (the pipeline's own encoder cuts it off)
    changed = prompt.split()
    changed[100] = "cat" if changed[100] != "cat" else "dog"
    changed = " ".join(changed)
    emb2, _ = encode_prompts(tiny_pipe, changed, "blurry")
    assert not torch.equal(emb2[:, WINDOW:], emb[:, WINDOW:])
    assert torch.equal(emb2[:, :WINDOW], emb[:, :WINDOW])
    assert torch.equal(reference(tiny_pipe, changed, "")[0], reference(tiny_pipe, prompt, "")[0])


def test_shorter_side_is_padded_with_empty_chunks(tiny_pipe):
    empty_chunk, _ = encode_prompts(tiny_pipe, "", "")
    short_negative = encode_prompts(tiny_pipe, words(120), "blurry")[1]
    assert short_negative.shape[1] == 2 * WINDOW
    assert torch.equal(short_negative[:, WINDOW:], empty_chunk)
    assert torch.equal(short_negative[:, :WINDOW], reference(tiny_pipe, "blurry", "")[0])

    prompt, long_negative = encode_prompts(tiny_pipe, "a cat", words(200))
    assert prompt.shape == long_negative.shape == (1, 3 * WINDOW, 32)
    assert torch.equal(prompt[:, WINDOW:2 * WINDOW], empty_chunk)


def test_break_starts_a_new_chunk(tiny_pipe):
    emb, neg = encode_prompts(tiny_pipe, "a red circle BREAK a blue square", "")
    assert emb.shape == neg.shape == (1, 2 * WINDOW, 32)
    torch.testing.assert_close(emb[:, WINDOW:], reference(tiny_pipe, "a blue square", "")[0], rtol=0, atol=0)


def test_a_phrase_after_a_nearby_comma_moves_whole_to_the_next_chunk(tiny_pipe):
    prompt = words(70) + ", blue square in the snow"  # the comma is token 71, the chunk holds 75
    emb, _ = encode_prompts(tiny_pipe, prompt, "")
    assert emb.shape[1] == 2 * WINDOW
    torch.testing.assert_close(emb[:, WINDOW:], reference(tiny_pipe, "blue square in the snow", "")[0],
                               rtol=0, atol=0)


def test_long_weighted_prompt_works_on_minilm(minilm_pipe):
    prompt = "a (glowing:1.4) lighthouse on a cliff, " * 12
    emb, neg = encode_prompts(minilm_pipe, prompt, "")
    assert emb.shape[1] > WINDOW and emb.shape[1] % WINDOW == 0 and emb.shape == neg.shape
    assert torch.isfinite(emb).all()


def test_deterministic_and_in_the_encoders_dtype(tiny_pipe):
    a = encode_prompts(tiny_pipe, "a ((red)) [circle], " + words(90), "ugly")
    b = encode_prompts(tiny_pipe, "a ((red)) [circle], " + words(90), "ugly")
    assert all(torch.equal(x, y) for x, y in zip(a, b))

    import copy
    half = SimpleNamespace(tokenizer=tiny_pipe.tokenizer,
                           text_encoder=copy.deepcopy(tiny_pipe.text_encoder).to(torch.bfloat16))
    emb, neg = encode_prompts(half, "a (red:1.2) circle", "blurry")
    assert emb.dtype == neg.dtype == torch.bfloat16


def test_the_pipeline_draws_from_long_weighted_embeddings(tiny_pipe):
    emb, neg = encode_prompts(tiny_pipe, "a (red:1.3) circle, " + words(100), "blurry")

    def draw(seed):
        return tiny_pipe(prompt_embeds=emb, negative_prompt_embeds=neg, num_inference_steps=2,
                         height=32, width=32, output_type="np",
                         generator=torch.Generator().manual_seed(seed)).images

    first, again = draw(1), draw(1)
    assert first.shape == (1, 32, 32, 3) and np.isfinite(first).all()
    assert np.array_equal(first, again)
