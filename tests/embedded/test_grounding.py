"""The token-grounding loss of the fine-tune: it must find each object's words in the
renderer's captions, cover the object's place, leave the UNet's output unchanged while it
records attention, and score attention inside the box better than attention elsewhere."""

import pytest
import torch

from imagestudio.embedded import grounding as G
from imagestudio.embedded import renderer
from imagestudio.embedded.training import MAX_TOKENS, load_text_encoder


def test_every_object_of_the_renderers_captions_is_found_in_order():
    scenes, captions = G.replay_scenes(5, 3000)
    for sc, cap in zip(scenes, captions):
        spans = G.object_spans(sc, cap)
        assert None not in spans, cap
        starts = [a for a, _ in spans]
        assert starts == sorted(starts)
        for obj, (a, b) in zip(sc.objects, spans):
            words = cap[a:b].split(" ", 1)
            assert words[0] == obj.color and words[1] in renderer.KIND_WORDS[obj.kind], cap


def test_a_colour_inside_another_word_is_not_taken_for_the_object():
    sc = renderer.Scene([renderer.SceneObject("orange", "star", "center", 34),
                         renderer.SceneObject("red", "boat", "left", 34)], "sea", "flat")
    cap = "orange five-pointed star centered and red sailing boat to the left, by the sea"
    spans = G.object_spans(sc, cap)
    assert [cap[a:b] for a, b in spans] == ["orange five-pointed star", "red sailing boat"]


def test_token_masks_pick_the_colour_and_kind_tokens_of_each_object():
    tok, _ = load_text_encoder()
    sc = renderer.Scene([renderer.SceneObject("red", "circle", "left", 34),
                         renderer.SceneObject("blue", "house", "right", 34)], "white", "flat")
    cap = "a red circle on the left and a blue cottage on the right"
    masks = G.token_masks([cap], [G.object_spans(sc, cap)], tok, MAX_TOKENS)
    ids = tok(cap, padding="max_length", max_length=MAX_TOKENS, truncation=True).input_ids
    words = [[tok.convert_ids_to_tokens(ids[t]) for t in range(MAX_TOKENS) if masks[0, k, t]] for k in range(3)]
    assert words == [["red", "circle"], ["blue", "cottage"], []]


def test_box_masks_cover_the_object_and_only_its_side():
    sc = renderer.Scene([renderer.SceneObject("red", "circle", "left", 36),
                         renderer.SceneObject("blue", "square", "right", 36)], "white", "flat")
    boxes = G.box_masks([sc], grid=8)[0]
    assert boxes[0, 3:5, 1:3].eq(1).all() and boxes[0, :, 5:].eq(0).all()
    assert boxes[1, 3:5, 5:7].eq(1).all() and boxes[1, :, :3].eq(0).all()
    assert boxes[2].sum() == 0  # no third object


def test_recording_attention_leaves_the_unets_output_unchanged():
    from diffusers import UNet2DConditionModel

    from imagestudio.embedded.training import unet_config

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet_config()).eval()
    x, t, text = torch.randn(2, 4, 32, 32), torch.tensor([10, 900]), torch.randn(2, MAX_TOKENS, 384)
    with torch.no_grad():
        before = unet(x, t, text).sample
        rec = G.install_recorder(unet)
        after = unet(x, t, text).sample
    assert torch.allclose(before, after, atol=1e-5)
    # one map per text cross-attention: 8x8 and 4x4 places over the 77 tokens
    assert sorted({m.shape[1] for m in rec.maps}) == [16, 64]
    assert all(m.shape[-1] == MAX_TOKENS and torch.allclose(m.sum(-1), torch.ones(())) for m in rec.maps)


def test_the_loss_is_zero_inside_the_box_and_high_outside_it():
    boxes = torch.zeros(1, 3, 8, 8)
    boxes[0, 0, 2:5, 0:3] = 1
    tokens = torch.zeros(1, 3, MAX_TOKENS, dtype=torch.bool)
    tokens[0, 0, 2:4] = True
    inside = torch.full((1, 64, MAX_TOKENS), 1e-9)
    inside.view(1, 8, 8, MAX_TOKENS)[0, 2:5, 0:3, 2:4] = 1.0
    outside = torch.full((1, 64, MAX_TOKENS), 1e-9)
    outside.view(1, 8, 8, MAX_TOKENS)[0, 2:5, 5:8, 2:4] = 1.0
    on = torch.ones(1, dtype=torch.bool)
    assert G.grounding_loss([inside], tokens, boxes, on) < 1e-6
    assert G.grounding_loss([outside], tokens, boxes, on) > 0.99
    # a 4x4 layer is scored against the box pooled to 4x4
    assert G.grounding_loss([inside.view(1, 8, 8, -1)[:, ::2, ::2].reshape(1, 16, -1)], tokens, boxes, on) < 1e-6
    # a caption dropped for guidance has nothing to ground
    assert G.grounding_loss([outside], tokens, boxes, ~on) == 0


def _two_objects():
    """Boxes, token masks and the caption flag of one scene with two objects: 0 on the
    left (tokens 2-3), 1 on the right (tokens 6-7)."""
    boxes = torch.zeros(1, 3, 8, 8)
    boxes[0, 0, 2:5, 0:3] = 1
    boxes[0, 1, 2:5, 5:8] = 1
    tokens = torch.zeros(1, 3, MAX_TOKENS, dtype=torch.bool)
    tokens[0, 0, 2:4] = True
    tokens[0, 1, 6:8] = True
    return boxes, tokens, torch.ones(1, dtype=torch.bool)


def test_the_binding_loss_wants_an_objects_places_to_attend_to_its_own_words():
    boxes, tokens, on = _two_objects()

    def maps(left_to, right_to, pad_share):
        # every place: pad_share on the padding (token 40), the rest on the given tokens
        m = torch.zeros(1, 8, 8, MAX_TOKENS)
        m[..., 40] = 1.0
        m[0, 2:5, 0:3, 40] = pad_share
        m[0, 2:5, 0:3, left_to] = (1 - pad_share) / 2
        m[0, 2:5, 5:8, 40] = pad_share
        m[0, 2:5, 5:8, right_to] = (1 - pad_share) / 2
        return [m.view(1, 64, MAX_TOKENS)]

    bound = maps([2, 3], [6, 7], 0.3)          # 70% on their own words: past the target
    swapped = maps([6, 7], [2, 3], 0.3)        # each place reads the other object's words
    padded = maps([2, 3], [6, 7], 0.97)        # the shipped UNet's pattern: mostly padding
    assert G.binding_loss(bound, tokens, boxes, on) == 0
    assert G.binding_loss(swapped, tokens, boxes, on) == pytest.approx(1.0)
    assert 0.85 < G.binding_loss(padded, tokens, boxes, on) < 1.0
    # a dropped caption has nothing to bind; a place inside both boxes belongs to neither
    assert G.binding_loss(swapped, tokens, boxes, ~on) == 0
    both = boxes.clone()
    both[0, 1] = both[0, 0]
    assert G.binding_loss(swapped, tokens, both, on) == 0


def test_the_separation_loss_wants_an_objects_places_to_read_its_words_not_its_neighbours():
    boxes, tokens, on = _two_objects()

    def maps(left, right):
        # {token: share} at each object's places, the rest on the padding (token 40)
        m = torch.zeros(1, 8, 8, MAX_TOKENS)
        m[..., 40] = 1.0
        for (rows, cols), shares in (((slice(2, 5), slice(0, 3)), left), ((slice(2, 5), slice(5, 8)), right)):
            m[0, rows, cols, 40] = 1 - sum(shares.values())
            for t, v in shares.items():
                m[0, rows, cols, t] = v
        return [m.view(1, 64, MAX_TOKENS)]

    # mostly padding but no neighbour's words: nothing to separate (binding's business)
    assert G.separation_loss(maps({2: 0.05}, {6: 0.05}), tokens, boxes, on) < 1e-3
    # the fifth cycle's pattern: own 45%, the neighbour's 30%: loss (0.3/0.75)^2
    mixed = maps({2: 0.45, 6: 0.3}, {6: 0.45, 2: 0.3})
    assert G.separation_loss(mixed, tokens, boxes, on) == pytest.approx(0.16, abs=1e-3)
    # swapped: each place reads only the other object's words
    assert G.separation_loss(maps({6: 0.7}, {2: 0.7}), tokens, boxes, on) == pytest.approx(1.0, abs=1e-3)
    # a single object, or a dropped caption, has no neighbour to be told apart from
    single = tokens.clone()
    single[0, 1] = False
    assert G.separation_loss(mixed, single, boxes, on) == 0
    assert G.separation_loss(mixed, tokens, boxes, ~on) == 0


def test_the_attention_report_splits_each_objects_places_between_word_groups():
    from imagestudio.embedded import WEIGHTS_DIR
    from imagestudio.embedded.attention_report import PARTS, attention_shares

    report = attention_shares(WEIGHTS_DIR, n=4, timesteps=(900, 300), batch=4)
    assert list(report) == ["t=900", "t=300"]
    for levels in report.values():
        assert list(levels) == ["8x8", "4x4"]  # the UNet's two cross-attention levels
        for shares in levels.values():
            assert all(0 <= shares[p] <= 1 for p in PARTS)
            assert sum(shares.values()) == pytest.approx(1.0, abs=2e-3)
