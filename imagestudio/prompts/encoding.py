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


def _chunks_for(pipe, layout: _TokenizerLayout, text: str) -> list[_Chunk]:
    pieces = parse_weights(text)
    return _chunk(layout, _tokenize_pieces(pipe, pipe.tokenizer, pieces), pieces)


def _encode_chunks(pipe, layout: _TokenizerLayout, chunks: list[_Chunk], device) -> "torch.Tensor":
    import torch

    rows, masks, weights = [], [], []
    for chunk in chunks:
        ids = layout.prefix + chunk.tokens + layout.suffix
        padding = layout.window - len(ids)
        rows.append(ids + [layout.pad] * padding)
        masks.append([1] * len(ids) + [0] * padding)
        weights.append([1.0] * len(layout.prefix) + chunk.weights + [1.0] * (len(layout.suffix) + padding))

    encoder = pipe.text_encoder
    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    attention_mask = None
    if getattr(encoder.config, "use_attention_mask", False):
        attention_mask = torch.tensor(masks, dtype=torch.long, device=device)

    with torch.no_grad():
        # one chunk per forward call: identical numerics to the pipeline's own encode_prompt
        hidden = torch.cat(
            [encoder(input_ids[i:i + 1],
                     attention_mask=None if attention_mask is None else attention_mask[i:i + 1])[0]
             for i in range(len(rows))]
        )
        hidden = hidden.to(dtype=encoder.dtype)
        if any(w != 1.0 for row in weights for w in row):
            scale = torch.tensor(weights, dtype=hidden.dtype, device=hidden.device).unsqueeze(-1)
            original_mean = hidden.mean(dim=(1, 2), keepdim=True)
            weighted = hidden * scale
            weighted_mean = weighted.mean(dim=(1, 2), keepdim=True)
            # A1111: restore each chunk's mean; guard a (pathological) zero mean
            ratio = torch.where(weighted_mean.abs() > 1e-6, original_mean / weighted_mean,
                                torch.ones_like(weighted_mean))
            hidden = weighted * ratio
    # (chunks, window, dim) -> (1, chunks * window, dim)
    return hidden.reshape(1, -1, hidden.shape[-1])


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
    positive = _chunks_for(pipe, layout, prompt or "")
    negative = _chunks_for(pipe, layout, negative_prompt or "")
    longest = max(len(positive), len(negative))
    positive += [_Chunk() for _ in range(longest - len(positive))]
    negative += [_Chunk() for _ in range(longest - len(negative))]
    return _encode_chunks(pipe, layout, positive, device), _encode_chunks(pipe, layout, negative, device)
