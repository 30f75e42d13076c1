"""How much a text encoder's token states say where each object goes.

Binding two objects needs a place on the left to find the left object's colour and kind
words; the UNet's cross-attention can only do that when those words' states carry their
object's position. This probe measures it: over two-object captions of the renderer, a
linear classifier reads an object's position (one of five) from the mean state of its
colour and kind tokens, at every layer of the encoder. Reported: held-out accuracy per
layer (the last one is what the UNet reads; chance is about 0.2).

    python -m imagestudio.embedded.text_probe --model DIR   # the model's own text encoder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import torch

from . import grounding, renderer, text_tuning, training


@torch.no_grad()
def _object_states(tok, enc, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([objects, layers + 1, D] mean span states, [objects] position index)."""
    scenes, captions, masks = grounding.two_object_set(n, seed, tok, training.MAX_TOKENS)
    masks = masks.float()
    positions = list(renderer.POSITIONS)
    feats, labels = [], []
    for i in range(0, n, 128):
        ids = tok(captions[i:i + 128], padding="max_length", max_length=training.MAX_TOKENS,
                  truncation=True, return_tensors="pt")
        hs = torch.stack(enc(ids.input_ids, attention_mask=ids.attention_mask,
                             output_hidden_states=True).hidden_states, 1).float()  # B, L+1, T, D
        m = masks[i:i + 128]  # B, K, T
        for b, sc in enumerate(scenes[i:i + 128]):
            for k, obj in enumerate(sc.objects):
                w = m[b, k]
                if w.sum() > 0:
                    feats.append((hs[b] * w[None, :, None]).sum(1) / w.sum())
                    labels.append(positions.index(obj.position))
    return torch.stack(feats), torch.tensor(labels)


def _probe_accuracy(x: torch.Tensor, y: torch.Tensor, train_share: float = 0.75, steps: int = 400) -> float:
    n = int(len(y) * train_share)
    mu, sd = x[:n].mean(0), x[:n].std(0) + 1e-5
    x = (x - mu) / sd
    w = torch.zeros(x.shape[1], int(y.max()) + 1, requires_grad=True)
    b = torch.zeros(w.shape[1], requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.01)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x[:n] @ w + b, y[:n]) + 1e-3 * (w ** 2).sum()
            loss.backward()
            opt.step()
    return float(((x[n:] @ w + b).argmax(1) == y[n:]).float().mean())


def position_probe(tuned: Optional[Path] = None, n: int = 4000, seed: int = 5) -> list[float]:
    """Held-out position accuracy per layer (index 0: the embeddings; last: what the UNet
    reads) of the package encoder, with `tuned` layers where given."""
    torch.manual_seed(seed)
    tok, enc = training.load_text_encoder(tuned)
    x, y = _object_states(tok, enc, n, seed)
    return [round(_probe_accuracy(x[:, layer], y), 3) for layer in range(x.shape[1])]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None,
                    help="a model folder (its trained text layers, if any); default: the package's encoder")
    ap.add_argument("-n", type=int, default=4000, help="two-object captions")
    args = ap.parse_args(argv)
    tuned = text_tuning.tuned_file(args.model) if args.model else None
    print(json.dumps({"model": str(args.model or "package"), "tuned_layers": str(tuned) if tuned else None,
                      "position_accuracy_per_layer": position_probe(tuned, args.n)}))


if __name__ == "__main__":
    main()
