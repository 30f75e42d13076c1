"""Training the frozen text encoder's last layers together with the UNet.

Why: the embedded model binds two objects' colours and kinds badly (each place draws from
a mix of both objects' words). A place on the left can only pick the left object's words
if those words' states say "left". Measured with a linear probe over 4,000 two-object
captions (position of the object from the mean state of its colour and kind tokens):
all-MiniLM-L6-v2 holds it at 73% after its 3rd layer but only 55% after its 6th, the states
the UNet reads (the model was trained for sentence similarity, where word order matters
little). So the fine-tune may train the last `n` layers with the UNet's losses and ship
them as a small file (`TUNED_FILE`, fp16) next to the text encoder's config; the rest of
the encoder still comes from the package, and `imagestudio.embedded.model_dir()` merges
the two into an ordinary BertModel checkpoint that any StableDiffusionPipeline loads.
The seventh cycle trained the last layer this way: two-object adherence 7.8% -> 54.7%,
swaps 24% -> 0.8% of slots (README), although the probe's last-layer figure hardly moved
(54.5% -> 55.8%): the layer made keys the UNet's places tell apart rather than states
that linearly say their position.

Training caches the states that enter the first trained layer (`entry_states`), so each
step runs only the trained layers on them (`run_layers`), exactly as BertModel does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

TUNED_FILE = "tuned_layers.safetensors"


def first_trained(enc, n: int) -> int:
    """Index of the first of the encoder's last `n` layers."""
    total = len(enc.encoder.layer)
    if not 0 < n <= total:
        raise ValueError(f"text layers to train must be 1..{total}, got {n}")
    return total - n


def trained_parameters(enc, n: int) -> list[torch.nn.Parameter]:
    return [p for layer in enc.encoder.layer[first_trained(enc, n):] for p in layer.parameters()]


def tuned_state(enc, n: int) -> dict[str, torch.Tensor]:
    """The last `n` layers' weights under the BertModel checkpoint's own key names."""
    start = first_trained(enc, n)
    return {k: v.detach().clone() for k, v in enc.state_dict().items()
            if k.startswith("encoder.layer.") and int(k.split(".")[2]) >= start}


def trained_layer_count(state: dict[str, torch.Tensor]) -> int:
    layers = {int(k.split(".")[2]) for k in state}
    return len(layers)


def apply_tuned(enc, path: Path) -> int:
    """Load a `TUNED_FILE` into a package encoder; returns how many layers it replaced."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    own = enc.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise ValueError(f"{path}: keys the text encoder does not have: {unknown[:3]}")
    enc.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)
    return trained_layer_count(state)


def save_tuned(enc, n: int, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.to(torch.float16).contiguous() for k, v in tuned_state(enc, n).items()}, str(path))


def merge_checkpoint(package_weights: Path, tuned: Path, dest: Path) -> None:
    """Write `dest`: the package's model.safetensors with the tuned layers replaced (fp32,
    as the package stores it)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(package_weights))
    for k, v in load_file(str(tuned)).items():
        if k not in state:
            raise ValueError(f"{tuned}: {k} is not a key of {package_weights}")
        state[k] = v.to(state[k].dtype)
    save_file(state, str(dest))


def complete_weights(te_dir: Path, package_weights: Path, tuned: Optional[Path]) -> None:
    """`te_dir/model.safetensors`, so the folder loads as it is: a link to the package's
    weights when no layer was trained, else them merged with the `tuned` layers."""
    out = te_dir / "model.safetensors"
    if tuned is None:
        out.symlink_to(package_weights.resolve())
    else:
        merge_checkpoint(package_weights, tuned, out)


def _mask_4d(enc, states: torch.Tensor, mask: torch.Tensor):
    # BertModel's own mask construction (eager / sdpa alike), so that the trained layers
    # see exactly the mask they see inside the pipeline's text encoder
    m, _ = enc._create_attention_masks(attention_mask=mask.long(), encoder_attention_mask=None,
                                       embedding_output=states, encoder_hidden_states=None,
                                       past_key_values=None)
    return m


@torch.no_grad()
def entry_states(texts: list[str], tok, enc, n: int, max_tokens: int, batch: int = 64
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp16 [N, T, D] states entering the first trained layer, bool [N, T] attention
    mask), tokenized as the pipeline does (padded to `max_tokens`), on the CPU."""
    start = first_trained(enc, n)
    states, masks = [], []
    for i in range(0, len(texts), batch):
        ids = tok(texts[i:i + batch], padding="max_length", max_length=max_tokens, truncation=True,
                  return_tensors="pt").to(enc.device)
        hs = enc(ids.input_ids, attention_mask=ids.attention_mask, output_hidden_states=True).hidden_states
        states.append(hs[start].to("cpu", torch.float16))
        masks.append(ids.attention_mask.bool().cpu())
    return torch.cat(states), torch.cat(masks)


def run_layers(enc, n: int, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The encoder's last `n` layers on cached entry states: its last hidden states."""
    m = _mask_4d(enc, states, mask)
    for layer in enc.encoder.layer[first_trained(enc, n):]:
        out = layer(states, attention_mask=m)
        states = out[0] if isinstance(out, tuple) else out
    return states


def tuned_file(folder: Path) -> Optional[Path]:
    """A model folder's tuned text layers, if it has any."""
    path = Path(folder) / "text_encoder" / TUNED_FILE
    return path if path.exists() else None
