"""Token grounding for the embedded model's UNet: a training loss that teaches each
object's words to attend to that object's place.

With two objects the shipped UNet drew both places but mixed their colours and kinds
(attribute binding): its cross-attention spread "red" and "circle" over the whole
picture. The renderer knows where every object is and which caption words name it, so
the fine-tune can supervise the cross-attention maps directly (the idea of TokenCompose,
Wang et al. 2024): for each object, the attention its colour and kind tokens receive
should fall inside its box. Only training uses this; the exported UNet is a plain
UNet2DConditionModel.
"""

from __future__ import annotations

import random
import re
from typing import Optional

import torch

from . import renderer

MAX_OBJECTS = 3
# share of the attention at an object's own places that the binding loss asks to go to
# the object's own words (the rest may go to style, background and padding tokens)
BINDING_TARGET = 0.6


def object_spans(scene: renderer.Scene, caption: str) -> list[Optional[tuple[int, int]]]:
    """Character span of each object's "<colour> <kind words>" in its caption.

    `renderer.caption` writes the objects' phrases in scene order and each noun as
    "[size] colour kind", so a left-to-right scan finds them without ambiguity even when
    two objects share a colour. None where a phrase is not found (never for the
    renderer's captions; kept so that a wording change degrades to no supervision)."""
    out: list[Optional[tuple[int, int]]] = []
    cursor = 0
    for obj in scene.objects:
        # a whole word: "centered" holds "red "
        found = re.compile(rf"\b{obj.color} ").search(caption, cursor)
        if found is None:
            out.append(None)
            continue
        start, after = found.start(), found.end()
        kinds = sorted(renderer.KIND_WORDS[obj.kind], key=len, reverse=True)
        word = next((k for k in kinds if caption.startswith(k, after)), None)
        if word is None:
            out.append(None)
            continue
        out.append((start, after + len(word)))
        cursor = after + len(word)
    return out


def token_masks(captions: list[str], spans: list[list[Optional[tuple[int, int]]]], tokenizer,
                max_tokens: int) -> torch.Tensor:
    """bool [N, MAX_OBJECTS, max_tokens]: the caption tokens of each object's span, with
    the same tokenization (and so the same positions) as the caption embeddings."""
    enc = tokenizer(captions, padding="max_length", max_length=max_tokens, truncation=True,
                    return_offsets_mapping=True)
    out = torch.zeros(len(captions), MAX_OBJECTS, max_tokens, dtype=torch.bool)
    for i, (offsets, obj_spans) in enumerate(zip(enc["offset_mapping"], spans)):
        for j, span in enumerate(obj_spans[:MAX_OBJECTS]):
            if span is None:
                continue
            for t, (a, b) in enumerate(offsets):
                if b > a and a >= span[0] and b <= span[1]:
                    out[i, j, t] = True
    return out


def two_object_set(n: int, seed: int, tokenizer, max_tokens: int
                   ) -> tuple[list[renderer.Scene], list[str], torch.Tensor]:
    """`n` two-object scenes drawn from `seed`, their captions and each object's caption
    tokens (as `token_masks`): the fixed set the training diagnostics measure on."""
    rng = random.Random(seed)
    scenes = [renderer.random_scene(rng, n_objects=2) for _ in range(n)]
    captions = [renderer.caption(sc, rng) for sc in scenes]
    spans = [object_spans(sc, c) for sc, c in zip(scenes, captions)]
    return scenes, captions, token_masks(captions, spans, tokenizer, max_tokens)


def object_box(obj: renderer.SceneObject, margin: int = 2) -> tuple[int, int, int, int]:
    """The object's box in 128-pixel image coordinates (x0, y0, x1, y1)."""
    cx, cy = renderer.POSITIONS[obj.position]
    cx, cy = cx + obj.dx, cy + obj.dy
    h = obj.size // 2 + margin
    return (max(cx - h, 0), max(cy - h, 0), min(cx + h, renderer.SIZE), min(cy + h, renderer.SIZE))


def box_masks(scenes: list[renderer.Scene], grid: int = 8) -> torch.Tensor:
    """float [N, MAX_OBJECTS, grid, grid]: 1 on the cells an object's box covers for at
    least a quarter of the cell."""
    cell = renderer.SIZE / grid
    out = torch.zeros(len(scenes), MAX_OBJECTS, grid, grid)
    for i, sc in enumerate(scenes):
        for j, obj in enumerate(sc.objects[:MAX_OBJECTS]):
            x0, y0, x1, y1 = object_box(obj)
            for gy in range(grid):
                oy = max(0.0, min(y1, (gy + 1) * cell) - max(y0, gy * cell))
                for gx in range(grid):
                    ox = max(0.0, min(x1, (gx + 1) * cell) - max(x0, gx * cell))
                    if ox * oy >= 0.25 * cell * cell:
                        out[i, j, gy, gx] = 1.0
    return out


def replay_scenes(seed: int, n: int, color_weights: Optional[dict] = None
                  ) -> tuple[list[renderer.Scene], list[str]]:
    """The scenes and captions `training.stage_data` drew from this seed and colour
    weights (rendering does not touch the rng, so no pixels are needed)."""
    rng = random.Random(seed)
    scenes, captions = [], []
    for _ in range(n):
        sc = renderer.random_scene(rng, color_weights=color_weights)
        scenes.append(sc)
        captions.append(renderer.caption(sc, rng))
    return scenes, captions


class AttentionRecorder:
    """Cross-attention processor that keeps each call's attention map (mean over heads).

    Computes attention the way diffusers' AttnProcessor does, so the UNet's output is
    unchanged; it only runs while training."""

    def __init__(self):
        self.maps: list[torch.Tensor] = []

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **kwargs):
        if hidden_states.ndim != 3 or encoder_hidden_states is None or attention_mask is not None:
            raise ValueError("AttentionRecorder handles the UNet's text cross-attention only")
        b = hidden_states.shape[0]
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, None)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        self.maps.append(probs.view(b, attn.heads, *probs.shape[1:]).mean(1))
        return out / attn.rescale_output_factor


def install_recorder(unet) -> AttentionRecorder:
    """Record every text cross-attention (attn2) of the UNet; self-attention keeps its
    processor."""
    rec = AttentionRecorder()
    procs = {name: (rec if name.endswith("attn2.processor") else proc)
             for name, proc in unet.attn_processors.items()}
    unet.set_attn_processor(procs)
    return rec


def _object_attention(maps: list[torch.Tensor], tok: torch.Tensor, boxes: torch.Tensor):
    """Per recorded layer: the attention each object's words receive at every place and
    the object's box at that layer's grid, both [B, K, HW] (4x4 layers see the finest
    grid's boxes max-pooled)."""
    g = boxes.shape[-1]
    for m in maps:
        side = int(round(m.shape[1] ** 0.5))
        bx = boxes if side == g else torch.nn.functional.adaptive_max_pool2d(boxes, side)
        yield torch.einsum("bpt,bkt->bkp", m, tok), bx.flatten(2)


def own_places(bx: torch.Tensor) -> torch.Tensor:
    """[B, K, P] boxes -> the places inside each object's box and no other's (a place
    covered by two boxes belongs to neither)."""
    return bx * (bx.sum(1, keepdim=True) <= 1).float()


def neighbour_tokens(tok: torch.Tensor) -> torch.Tensor:
    """[B, K, T] float token masks -> each object's neighbours' tokens (the objects'
    spans never share a token)."""
    return (tok.sum(1, keepdim=True) - tok).clamp(max=1.0)


def grounding_loss(maps: list[torch.Tensor], tokens: torch.Tensor, boxes: torch.Tensor,
                   active: torch.Tensor) -> torch.Tensor:
    """Mean over recorded layers and objects of (1 - share of the object's token attention
    that falls inside its box)^2.

    maps: [B, HW, T] per layer; tokens: bool [B, K, T]; boxes: [B, K, G, G] at the finest
    grid; active: bool [B] (captions dropped for guidance have no words to ground)."""
    tok = tokens.float()
    has = tok.any(-1) & active[:, None]  # [B, K]
    if not has.any():
        return maps[0].sum() * 0.0
    losses = []
    for a, bx in _object_attention(maps, tok, boxes):
        share = (a * bx).sum(-1) / a.sum(-1).clamp_min(1e-8)
        losses.append(((1 - share) ** 2)[has].mean())
    return torch.stack(losses).mean()


def binding_loss(maps: list[torch.Tensor], tokens: torch.Tensor, boxes: torch.Tensor,
                 active: torch.Tensor, target: float = BINDING_TARGET) -> torch.Tensor:
    """The pixel side of grounding: at the places inside an object's box (and no other
    object's box), the share of attention its own colour and kind words receive should
    reach `target`: mean over layers and objects of (max(target - share, 0) / target)^2.

    Why: the grounding loss above only looks at where each word's attention lands. Measured
    on the third-cycle UNet over 64 two-object scenes, 68-99% of the attention at an
    object's places went to the 77-token padding (BERT's padding states summarise the whole
    caption, both objects' colours and kinds), 0.4-11% to its own words and 0-6% to the
    other object's: what a place draws came mostly from a bag of both objects' words.
    A cycle with this loss cut the padding's share to 0.4-18% but raised the other
    object's to 13-35%, and two-object adherence did not move (README). Same arguments
    as `grounding_loss`."""
    tok = tokens.float()
    has = tok.any(-1) & active[:, None]  # [B, K]
    if not has.any():
        return maps[0].sum() * 0.0
    losses = []
    for a, bx in _object_attention(maps, tok, boxes):
        places = own_places(bx)
        n = places.sum(-1)  # [B, K]
        ok = has & (n > 0)
        if not ok.any():
            continue
        share = (a * places).sum(-1) / n.clamp_min(1)
        losses.append(((torch.relu(target - share) / target) ** 2)[ok].mean())
    if not losses:
        return maps[0].sum() * 0.0
    return torch.stack(losses).mean()


def separation_loss(maps: list[torch.Tensor], tokens: torch.Tensor, boxes: torch.Tensor,
                    active: torch.Tensor) -> torch.Tensor:
    """The contrast the binding loss lacked: at the places inside an object's box (and no
    other object's box), of the attention that goes to any object's words, the share of
    its own words should be 1: mean over layers and objects that have a neighbour of
    (1 - own / (own + others'))^2, summed over the object's places.

    Why: the binding loss measures own words against everything else, so a cycle could
    (and did) satisfy it by moving the padding's share to both objects' words at once: at
    an object's places the other object's words rose from 0-6% to 13-35%. This one asks
    only which object's words a place reads, not how much it reads the padding, so it
    cannot be met by mixing. Single-object scenes have nothing to separate. Same arguments
    as `grounding_loss`."""
    tok = tokens.float()
    other = neighbour_tokens(tok)
    has = tok.any(-1) & other.any(-1) & active[:, None]  # [B, K]
    if not has.any():
        return maps[0].sum() * 0.0
    losses = []
    for (a_own, bx), (a_other, _) in zip(_object_attention(maps, tok, boxes),
                                         _object_attention(maps, other, boxes)):
        places = own_places(bx)
        ok = has & (places.sum(-1) > 0)
        if not ok.any():
            continue
        own = (a_own * places).sum(-1)
        oth = (a_other * places).sum(-1)
        share = own / (own + oth + 1e-4)
        losses.append(((1 - share) ** 2)[ok].mean())
    if not losses:
        return maps[0].sum() * 0.0
    return torch.stack(losses).mean()
