"""Prompts: A1111 weighting syntax, long-prompt embeddings, style presets and
deterministic enhancement.

Importing this package does not import torch; `encode_prompts` and the Auto
style load it when first used.
"""

from .encoding import encode_prompts, encode_prompts_sdxl
from .enhance import enhance_prompt
from .styles import Style, StyledPrompt, apply_style, choose_style, get_style, list_styles
from .syntax import BREAK, parse_weights, plain_text

__all__ = [
    "BREAK",
    "Style",
    "StyledPrompt",
    "apply_style",
    "choose_style",
    "encode_prompts",
    "encode_prompts_sdxl",
    "enhance_prompt",
    "get_style",
    "list_styles",
    "parse_weights",
    "plain_text",
]
