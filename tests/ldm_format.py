"""Write a diffusers SD1.x pipeline as an original (LDM / AUTOMATIC1111)
single-file checkpoint, so the single-file loading path can be tested on tiny
models without downloads. Test-only: the studio itself never writes these."""

from __future__ import annotations

from pathlib import Path

import torch

RESNET = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
          ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut")]
VAE_RESNET = [("nin_shortcut", "conv_shortcut")]
VAE_ATTN = [("norm", "group_norm"), ("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")]


def _rename(state: dict, prefix_from: str, prefix_to: str, inner: list[tuple[str, str]] = ()) -> dict:
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix_from):
            continue
        rest = key[len(prefix_from):]
        for ldm, hf in inner:
            if rest.startswith(hf + "."):
                rest = ldm + rest[len(hf):]
        out[prefix_to + rest] = value
    return out


def unet_to_ldm(unet) -> dict:
    sd = unet.state_dict()
    cfg = unet.config
    layers = cfg.layers_per_block
    out = {}
    simple = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
              "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for hf, ldm in simple.items():
        out.update(_rename(sd, hf + ".", ldm + "."))
    for i, _ in enumerate(cfg.block_out_channels):
        for j in range(layers):
            k = 1 + i * (layers + 1) + j
            out.update(_rename(sd, f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{k}.0.", RESNET))
            out.update(_rename(sd, f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{k}.1."))
        k = (i + 1) * (layers + 1)
        out.update(_rename(sd, f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{k}.0.op."))
    out.update(_rename(sd, "mid_block.resnets.0.", "middle_block.0.", RESNET))
    out.update(_rename(sd, "mid_block.attentions.0.", "middle_block.1."))
    out.update(_rename(sd, "mid_block.resnets.1.", "middle_block.2.", RESNET))
    for i, block_type in enumerate(cfg.up_block_types):
        has_attn = "CrossAttn" in block_type
        for j in range(layers + 1):
            k = i * (layers + 1) + j
            out.update(_rename(sd, f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{k}.0.", RESNET))
            out.update(_rename(sd, f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{k}.1."))
        k = i * (layers + 1) + layers
        out.update(_rename(sd, f"up_blocks.{i}.upsamplers.0.conv.", f"output_blocks.{k}.{2 if has_attn else 1}.conv."))
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def vae_to_ldm(vae) -> dict:
    sd = vae.state_dict()
    n = len(vae.config.block_out_channels)
    out = {}
    for part in ("encoder", "decoder"):
        for name in ("conv_in", "conv_out"):
            out.update(_rename(sd, f"{part}.{name}.", f"{part}.{name}."))
        out.update(_rename(sd, f"{part}.conv_norm_out.", f"{part}.norm_out."))
        out.update(_rename(sd, f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.", VAE_RESNET))
        out.update(_rename(sd, f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.", VAE_RESNET))
        out.update(_rename(sd, f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", VAE_ATTN))
    for i in range(n):
        for j in range(vae.config.layers_per_block):
            out.update(_rename(sd, f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.", VAE_RESNET))
        out.update(_rename(sd, f"encoder.down_blocks.{i}.downsamplers.0.conv.", f"encoder.down.{i}.downsample.conv."))
        for j in range(vae.config.layers_per_block + 1):
            out.update(_rename(sd, f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{n - 1 - i}.block.{j}.", VAE_RESNET))
        out.update(_rename(sd, f"decoder.up_blocks.{i}.upsamplers.0.conv.", f"decoder.up.{n - 1 - i}.upsample.conv."))
    for name in ("quant_conv", "post_quant_conv"):
        out.update(_rename(sd, name + ".", name + "."))
    # LDM's VAE attention uses 1x1 convolutions where diffusers uses linears
    for key, value in out.items():
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            out[key] = value[:, :, None, None]
    return {"first_stage_model." + k: v for k, v in out.items()}


def save_ldm_checkpoint(pipe, path: Path) -> Path:
    from safetensors.torch import save_file

    state = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae)}
    # Original checkpoints nest the CLIP weights under `text_model.` (as
    # transformers < 5.6 did); newer transformers flattened that level.
    for key, value in pipe.text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else "text_model." + key
        state["cond_stage_model.transformer." + key] = value
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return Path(path)
