"""Where the UNet's text cross-attention looks at the places of each object.

For rendered two-object scenes, noised to a few timesteps, this splits the attention at
the places inside one object's box (and no other object's box) between the object's own
colour and kind words, the other object's words, the padding after [SEP], and the rest
(CLS/SEP, position, background and style words). This is the measurement behind the
binding and separation losses (grounding.py) and the README's figures on them:

    python -m imagestudio.embedded.attention_report --model imagestudio/embedded/weights

Only training diagnostics use it; it needs the model's UNet and VAE and its text encoder
(the package's MiniLM with the model's trained layers, where it has any).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from . import grounding, renderer, text_tuning, training

PARTS = ("own", "other", "padding", "rest")


@torch.no_grad()
def attention_shares(folder: Path, n: int = 64, timesteps=(900, 600, 300), seed: int = 4242,
                     batch: int = 16) -> dict:
    """{"t=900": {"8x8": {"own": share, "other": ..., "padding": ..., "rest": ...}, ...}, ...}:
    each share is the mean over objects (two per scene, n scenes) of the attention at the
    object's own places, averaged over the layers of that grid size."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32).eval()
    recorder = grounding.install_recorder(unet)
    tok, enc = training.load_text_encoder(text_tuning.tuned_file(folder))  # the model's own
    sched = training.make_train_scheduler()

    scenes, captions, tokens = grounding.two_object_set(n, seed, tok, training.MAX_TOKENS)
    tokens = tokens.float()
    emb = training.embed_texts(captions, tok, enc).float()
    padding = 1 - tok(captions, padding="max_length", max_length=training.MAX_TOKENS,
                      truncation=True, return_tensors="pt").attention_mask.float()
    # each cross-attention level's boxes at its own grid (8x8 and 4x4), drawn once
    boxes = {side: grounding.box_masks(scenes, grid=side).flatten(2)
             for side in (renderer.SIZE // 16, renderer.SIZE // 32)}
    images = np.stack([np.asarray(renderer.render(sc)) for sc in scenes])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    latents = torch.cat([vae.encode(x[i:i + batch]).latent_dist.mean for i in range(0, n, batch)])
    latents = latents * vae.config.scaling_factor

    gen = torch.Generator().manual_seed(seed)
    report = {}
    for t_value in timesteps:
        sums: dict[str, dict[str, float]] = {}
        counts: dict[str, int] = {}
        for i in range(0, n, batch):
            sl = slice(i, i + batch)
            t = torch.full((latents[sl].shape[0],), t_value, dtype=torch.long)
            noise = torch.randn(latents[sl].shape, generator=gen)
            recorder.maps.clear()
            unet(sched.add_noise(latents[sl], noise, t), t, emb[sl])
            tok_b, pad_b = tokens[sl], padding[sl]
            other_b = grounding.neighbour_tokens(tok_b)
            for m in recorder.maps:
                side = int(round(m.shape[1] ** 0.5))
                places = grounding.own_places(boxes[side][sl])  # [B, K, P]
                npl = places.sum(-1)
                ok = (tok_b.any(-1)) & (npl > 0)
                mean_at = lambda a: ((a * places).sum(-1) / npl.clamp_min(1))[ok]  # noqa: E731
                own = mean_at(torch.einsum("bpt,bkt->bkp", m, tok_b))
                other = mean_at(torch.einsum("bpt,bkt->bkp", m, other_b))
                pad = mean_at(torch.einsum("bpt,bt->bp", m, pad_b)[:, None].expand_as(places))
                key = f"{side}x{side}"
                acc = sums.setdefault(key, dict.fromkeys(PARTS, 0.0))
                acc["own"] += own.sum().item()
                acc["other"] += other.sum().item()
                acc["padding"] += pad.sum().item()
                acc["rest"] += (1 - own - other - pad).sum().item()
                counts[key] = counts.get(key, 0) + int(ok.sum())
        report[f"t={t_value}"] = {k: {p: round(v[p] / counts[k], 4) for p in PARTS}
                                  for k, v in sorted(sums.items(), reverse=True)}
    return report


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="A diffusers folder (unet/, vae/).")
    ap.add_argument("--scenes", type=int, default=64)
    ap.add_argument("--seed", type=int, default=4242)
    args = ap.parse_args(argv)
    print(json.dumps(attention_shares(args.model, n=args.scenes, seed=args.seed), indent=1))


if __name__ == "__main__":
    main()
