"""Weighted, unlimited-length prompt embeddings for Stable Diffusion pipelines,
built the way AUTOMATIC1111 builds them.

The text is split into weighted pieces (`parse_weights`), each piece is
tokenized, and the tokens are packed into chunks that fit the text encoder's
window (75 tokens for CLIP: 77 minus BOS and EOS). Every chunk gets the
tokenizer's own start/end tokens and padding and is encoded on its own; the
chunk embeddings are concatenated along the sequence axis, so a 120-token
prompt gives 2 x 77 embeddings instead of being cut at 77. Each token's
embedding is then multiplied by its weight and the chunk is rescaled to its
original mean, so weights shift emphasis without changing overall loudness.

`encode_prompts` serves SD 1.x/2.x pipelines (one text encoder: CLIP, or a
BERT-style encoder such as the embedded model's MiniLM); `encode_prompts_sdxl`
serves SDXL (two CLIP encoders, penultimate layer, pooled embedding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .syntax import BREAK, parse_weights

if TYPE_CHECKING:  # torch is imported only when embeddings are built
    import torch

#: When a chunk is full, text after a comma this close to its end moves to the
#: next chunk whole (A1111's "comma padding backtrack"), so phrases are not split.
COMMA_BACKTRACK = 20


@dataclass
class _Chunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _TokenizerLayout:
    """Where a tokenizer puts its special tokens, learnt from the tokenizer
    itself (BOS/EOS for CLIP, CLS/SEP for BERT)."""

    prefix: list[int]
    suffix: list[int]
    pad: int
    chunk_length: int
    comma: int | None

    @classmethod
    def of(cls, tokenizer, text_encoder) -> "_TokenizerLayout":
        plain = tokenizer("a", add_special_tokens=False).input_ids
        full = tokenizer("a").input_ids
        start = _find(full, plain)
        prefix, suffix = full[:start], full[start + len(plain):]
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = suffix[-1] if suffix else 0
        window = tokenizer.model_max_length
        limit = getattr(getattr(text_encoder, "config", None), "max_position_embeddings", None)
        if limit and (window is None or window > limit):
            window = limit
        comma_ids = tokenizer(",", add_special_tokens=False).input_ids
        return cls(
            prefix=prefix,
            suffix=suffix,
            pad=pad,
            chunk_length=window - len(prefix) - len(suffix),
            comma=comma_ids[0] if len(comma_ids) == 1 else None,
        )

    @property
    def window(self) -> int:
        return self.chunk_length + len(self.prefix) + len(self.suffix)


def _find(haystack: list[int], needle: list[int]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if haystack[i:i + len(needle)] == needle:
            return i
    raise ValueError("cannot locate the tokenizer's special tokens")


def _tokenize_pieces(pipe, tokenizer, pieces: list[tuple[str, float]]) -> list[list[int]]:
    texts = [text for text, _ in pieces]
    added = getattr(tokenizer, "added_tokens_encoder", {}) or {}
    if hasattr(pipe, "maybe_convert_prompt") and any(name in t for t in texts for name in added):
        # textual-inversion embeddings that span several tokens
        texts = [pipe.maybe_convert_prompt(t, tokenizer) for t in texts]
    return tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False).input_ids


def _chunk(layout: _TokenizerLayout, token_lists: list[list[int]], pieces) -> list[_Chunk]:
    chunks: list[_Chunk] = []
    chunk = _Chunk()
    last_comma = -1

    def close_chunk() -> None:
        nonlocal chunk, last_comma
        chunks.append(chunk)
        chunk = _Chunk()
        last_comma = -1

    for tokens, (text, weight) in zip(token_lists, pieces):
        if (text, weight) == BREAK:
            if chunk.tokens:
                close_chunk()
            continue
        for token in tokens:
            if len(chunk.tokens) == layout.chunk_length:
                if last_comma != -1 and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK:
                    split = last_comma + 1
                    moved = _Chunk(chunk.tokens[split:], chunk.weights[split:])
                    chunk.tokens, chunk.weights = chunk.tokens[:split], chunk.weights[:split]
                    close_chunk()
                    chunk = moved
                else:
                    close_chunk()
            if token == layout.comma:
                last_comma = len(chunk.tokens)
            chunk.tokens.append(token)
            chunk.weights.append(weight)
    if chunk.tokens or not chunks:
        close_chunk()
    return chunks


def _chunks_for(pipe, tokenizer, layout: _TokenizerLayout, text: str) -> list[_Chunk]:
    pieces = parse_weights(text)
    return _chunk(layout, _tokenize_pieces(pipe, tokenizer, pieces), pieces)


def _pad_to_same_length(*chunk_lists: list[_Chunk]) -> None:
    longest = max(len(chunks) for chunks in chunk_lists)
    for chunks in chunk_lists:
        chunks += [_Chunk() for _ in range(longest - len(chunks))]


def _run_encoder(encoder, layout: _TokenizerLayout, chunks: list[_Chunk], device, penultimate: bool):
    """Encode each chunk (unweighted). Returns hidden states (chunks, window, dim),
    the first chunk's pooled output when the encoder has one, and the token
    weights (chunks, window)."""
    import torch

    rows, masks, weights = [], [], []
    for chunk in chunks:
        ids = layout.prefix + chunk.tokens + layout.suffix
        padding = layout.window - len(ids)
        rows.append(ids + [layout.pad] * padding)
        masks.append([1] * len(ids) + [0] * padding)
        weights.append([1.0] * len(layout.prefix) + chunk.weights + [1.0] * (len(layout.suffix) + padding))

    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    attention_mask = None
    if getattr(encoder.config, "use_attention_mask", False):
        attention_mask = torch.tensor(masks, dtype=torch.long, device=device)

    hidden, pooled = [], None
    with torch.no_grad():
        # one chunk per forward call: identical numerics to the pipeline's own encode_prompt
        for i in range(len(rows)):
            mask = None if attention_mask is None else attention_mask[i:i + 1]
            if penultimate:
                out = encoder(input_ids[i:i + 1], output_hidden_states=True)
                hidden.append(out.hidden_states[-2])
                if i == 0 and out[0].ndim == 2:
                    pooled = out[0]
            else:
                hidden.append(encoder(input_ids[i:i + 1], attention_mask=mask)[0])
    return torch.cat(hidden), pooled, weights


def _apply_weights(hidden: list, weights: list[list[list[float]]]):
    """Multiply each token's embedding by its weight, then rescale every chunk
    to its original mean (A1111). `hidden` holds one (chunks, window, dim)
    tensor per text encoder; the result is concatenated along the feature
    axis and flattened to (1, chunks * window, dims)."""
    import torch

    combined = torch.cat(hidden, dim=-1)
    if any(w != 1.0 for per_encoder in weights for row in per_encoder for w in row):
        weighted = torch.cat(
            [h * torch.tensor(w, dtype=h.dtype, device=h.device).unsqueeze(-1) for h, w in zip(hidden, weights)],
            dim=-1,
        )
        original_mean = combined.mean(dim=(1, 2), keepdim=True)
        weighted_mean = weighted.mean(dim=(1, 2), keepdim=True)
        # guard a (pathological) zero mean
        ratio = torch.where(weighted_mean.abs() > 1e-6, original_mean / weighted_mean,
                            torch.ones_like(weighted_mean))
        combined = weighted * ratio
    return combined.reshape(1, -1, combined.shape[-1])


def encode_prompts(pipe, prompt: str, negative_prompt: str, device=None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Return ``(prompt_embeds, negative_prompt_embeds)`` for a diffusers
    StableDiffusion* pipeline, both shaped ``(1, chunks * window, dim)``.

    Weighting follows `parse_weights`; prompts longer than the text encoder's
    window are encoded in chunks and concatenated, not cut. The shorter of the
    two texts is padded with encoded empty chunks so both have the same length
    (classifier-free guidance stacks them). A plain prompt that fits one
    window gives exactly the embeddings of ``pipe.encode_prompt``.
    """
    encoder = pipe.text_encoder
    if device is None:
        device = encoder.device
    layout = _TokenizerLayout.of(pipe.tokenizer, encoder)
    positive = _chunks_for(pipe, pipe.tokenizer, layout, prompt or "")
    negative = _chunks_for(pipe, pipe.tokenizer, layout, negative_prompt or "")
    _pad_to_same_length(positive, negative)
    result = []
    for chunks in (positive, negative):
        hidden, _, weights = _run_encoder(encoder, layout, chunks, device, penultimate=False)
        result.append(_apply_weights([hidden.to(encoder.dtype)], [weights]))
    return result[0], result[1]


def encode_prompts_sdxl(pipe, prompt: str, negative_prompt: str, device=None):
    """The same for a StableDiffusionXL* pipeline (two CLIP text encoders).

    Returns ``(prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds,
    negative_pooled_prompt_embeds)`` to pass to the pipeline. Each chunk goes
    through both encoders (penultimate hidden states, concatenated on the
    feature axis, as SDXL expects); the pooled embedding comes from the first
    chunk. An empty negative prompt gives zeros when the pipeline is
    configured with ``force_zeros_for_empty_prompt`` (diffusers' default).
    A plain prompt that fits one window gives exactly ``pipe.encode_prompt``'s
    embeddings.
    """
    import torch

    pairs = [(t, e) for t, e in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2))
             if t is not None and e is not None]
    if device is None:
        device = pairs[-1][1].device
    dtype = pairs[-1][1].dtype
    towers = [(tokenizer, encoder, _TokenizerLayout.of(tokenizer, encoder)) for tokenizer, encoder in pairs]
    chunk_sets = {text: [_chunks_for(pipe, t, layout, text) for t, _, layout in towers]
                  for text in {prompt or "", negative_prompt or ""}}
    _pad_to_same_length(*[chunks for per_text in chunk_sets.values() for chunks in per_text])

    def encode(text: str):
        hidden, weights, pooled = [], [], None
        for (_, encoder, layout), chunks in zip(towers, chunk_sets[text]):
            h, p, w = _run_encoder(encoder, layout, chunks, device, penultimate=True)
            hidden.append(h)
            weights.append(w)
            pooled = pooled if pooled is not None else p
        return _apply_weights(hidden, weights).to(dtype), pooled.to(dtype)

    prompt_embeds, pooled = encode(prompt or "")
    if not (negative_prompt or "").strip() and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
        return prompt_embeds, torch.zeros_like(prompt_embeds), pooled, torch.zeros_like(pooled)
    negative_embeds, negative_pooled = encode(negative_prompt or "")
    return prompt_embeds, negative_embeds, pooled, negative_pooled
