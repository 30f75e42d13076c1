"""Tiny Stable-Diffusion-architecture pipelines built from configs with seeded
random weights, saved with save_pretrained and (re)loaded offline through the
studio's real loading code. They draw noise, but every mode's plumbing
(schedulers, masks, latents, metadata) is exercised for real, in milliseconds."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = (
    "a an the of on in with and red green blue yellow orange purple pink white black "
    "circle square triangle star house tree sun moon flower boat left right top bottom "
    "center sky night sea grass snow comic neon pastel shaded render style bold outlines "
    "glow colors 3d photo cat dog portrait detailed quality high best masterpiece sharp focus "
    "lighting cinematic anime fantasy cyberpunk movie model blurry ugly"
).split()


def tiny_tokenizer():
    """A byte-level-free CLIP tokenizer whose vocabulary is built in code."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789,.:()[]'-":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    for word in WORDS:
        vocab.setdefault(word + "</w>", len(vocab))
    merges_needed: list[tuple[str, str]] = []
    # Build merges so every vocabulary word tokenizes to one token.
    seen = set()
    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            merged = pieces[0] + pieces[1]
            if pair not in seen:
                seen.add(pair)
                merges_needed.append(pair)
                vocab.setdefault(merged, len(vocab))
            pieces = [merged] + pieces[2:]
    import tempfile, os

    tmp = tempfile.mkdtemp()
    vocab_file = os.path.join(tmp, "vocab.json")
    merges_file = os.path.join(tmp, "merges.txt")
    with open(vocab_file, "w") as fh:
        json.dump(vocab, fh)
    with open(merges_file, "w") as fh:
        fh.write("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges_needed) + "\n")
    tok = CLIPTokenizer(vocab_file, merges_file, model_max_length=77, pad_token="!")
    return tok


def build_tiny_components(inpaint: bool = False, seed: int = 0, cross_dim: int = 32):
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=64,
        in_channels=9 if inpaint else 4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_dim,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[16, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
            hidden_size=cross_dim,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=max(tokenizer.get_vocab().values()) + 1,
            max_position_embeddings=77,
        )
    )
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1
    )
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def save_tiny_pipeline(folder: Path, inpaint: bool = False, seed: int = 0) -> Path:
    """Save a tiny SD1.x-style pipeline as a diffusers folder."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    pipe = cls(**build_tiny_components(inpaint=inpaint, seed=seed), safety_checker=None,
               feature_extractor=None, requires_safety_checker=False)
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_controlnet(models: Path) -> Path:
    """models/ControlNet/tiny-canny: ControlNetModel.from_unet of the tiny UNet
    in `models`, with its zero convolutions randomised so that it visibly
    changes the image."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(models / "Stable-diffusion" / "tiny", subfolder="unet")
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    torch.manual_seed(3)
    with torch.no_grad():
        for module in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
            module.weight.normal_(0, 0.3)
    folder = models / "ControlNet" / "tiny-canny"
    net.save_pretrained(folder)
    return folder
