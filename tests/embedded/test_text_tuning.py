"""Training the text encoder's last layers with the fine-tune: the cached states plus the
trained layers give exactly what the pipeline's text encoder gives, a cycle that trains
them ships only those layers and loads through the ordinary pipeline, and the next cycle
starts from them."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from imagestudio.embedded import text_tuning as TT
from imagestudio.embedded import training as T

CAPTIONS = ["a red circle on the left and a blue cottage on the right, night sky",
            "", "left side: one red disc, comic style, bold outlines"]


@pytest.fixture(scope="module")
def encoder():
    return T.load_text_encoder()


@pytest.mark.parametrize("n", [1, 2])
def test_trained_layers_on_cached_states_give_the_pipelines_states(encoder, n):
    tok, enc = encoder
    full = T.embed_texts(CAPTIONS, tok, enc).float()
    states, mask = TT.entry_states(CAPTIONS, tok, enc, n, T.MAX_TOKENS)
    assert states.shape == full.shape and mask.shape == full.shape[:2]
    out = TT.run_layers(enc, n, states.float(), mask)
    # the cached states are fp16, like the caption embeddings the UNet trained on
    assert (out - full).abs().max() < 0.02 * full.abs().max()
    # and the padding matters: every one of the 77 states is the pipeline's
    assert (out[:, -1] - full[:, -1]).abs().max() < 0.02 * full.abs().max()


def test_layer_counts_outside_the_encoder_are_refused(encoder):
    _, enc = encoder
    for n in (0, 7):
        with pytest.raises(ValueError, match="1..6"):
            TT.first_trained(enc, n)


def test_a_tuned_file_with_foreign_keys_is_refused(encoder, tmp_path):
    from safetensors.torch import save_file

    _, enc = encoder
    bad = tmp_path / TT.TUNED_FILE
    save_file({"encoder.layer.9.output.dense.weight": torch.zeros(2, 2)}, str(bad))
    with pytest.raises(ValueError, match="keys the text encoder does not have"):
        TT.apply_tuned(enc, bad)


@pytest.fixture(scope="module")
def tuned_cycle(tmp_path_factory):
    """A tiny base run, then a continued cycle that trains the last text layer."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tt")
    cfg = T.TrainConfig(scenes=12, vae_steps=2, vae_batch=2, vae_full_steps=1, decoder_steps=2,
                        unet_steps=2, unet_batch=2, finetune_steps=1, checkpoint_seconds=0)
    T.run_all(root / "w1", root / "first", cfg)
    T.init_from(root / "w2", root / "first")
    cfg = dataclasses.replace(cfg, finetune_steps=3, text_layers=1, text_lr=1e-3, separation_weight=0.3)
    T.run_all(root / "w2", root / "second", cfg, stages=("data", "latents", "text", "ground", "finetune", "export"))
    return root, cfg


def test_a_cycle_that_trains_the_last_text_layer_ships_only_that_layer(tuned_cycle, encoder):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    root, cfg = tuned_cycle
    te = root / "second" / "text_encoder"
    shipped = load_file(str(te / TT.TUNED_FILE))
    assert {k.split(".")[2] for k in shipped} == {"5"}  # the last of six layers only
    assert all(v.dtype == torch.float16 for v in shipped.values())
    record = json.loads((root / "second" / "studio.json").read_text())["training"]
    assert record["text_layers"] == 1 and record["text_lr"] == cfg.text_lr
    rows = [json.loads(line) for line in (root / "w2" / "finetune_loss.log").read_text().splitlines()]
    assert rows and "separation" in rows[-1]

    # the exported folder loads as it is through the ordinary pipeline, with the trained layer
    pipe = StableDiffusionPipeline.from_pretrained(root / "second", local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    _, package = encoder
    ours, theirs = pipe.text_encoder.state_dict(), package.state_dict()
    key = "encoder.layer.5.output.dense.weight"
    assert not torch.equal(ours[key], theirs[key])  # it trained
    assert torch.equal(ours[key], shipped[key].float())
    assert torch.equal(ours["encoder.layer.4.output.dense.weight"], theirs["encoder.layer.4.output.dense.weight"])
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle on the left", num_inference_steps=2, height=128, width=128,
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (128, 128)


def test_the_next_cycle_starts_from_the_trained_layer_and_ships_it_again(tuned_cycle, tmp_path):
    from safetensors.torch import load_file

    root, cfg = tuned_cycle
    work = tmp_path / "w3"
    T.init_from(work, root / "second")
    assert (work / "text_tuned.safetensors").exists()
    # this cycle leaves the text encoder alone: its caption states come from the trained layer
    cfg = dataclasses.replace(cfg, text_layers=0, separation_weight=0.0, finetune_steps=1)
    T.run_all(work, tmp_path / "third", cfg, stages=("data", "latents", "text", "finetune", "export"))
    tok, enc = T.load_text_encoder(root / "second" / "text_encoder" / TT.TUNED_FILE)
    stored = torch.load(work / "text.pt")["emb"][:2].float()
    captions = [str(c) for c in np.load(work / "data.npz")["captions"][:2]]
    assert torch.allclose(stored, T.embed_texts(captions, tok, enc).float(), atol=1e-2)
    before = load_file(str(root / "second" / "text_encoder" / TT.TUNED_FILE))
    after = load_file(str(tmp_path / "third" / "text_encoder" / TT.TUNED_FILE))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_the_studio_assembles_a_merged_text_encoder_for_a_model_with_trained_layers(tuned_cycle, tmp_path,
                                                                                   monkeypatch, encoder):
    """model_dir(): the repo ships the trained layers only; the cache gets a complete
    checkpoint (package weights with those layers replaced)."""
    import imagestudio.embedded as E
    from transformers import BertModel

    root, _ = tuned_cycle
    repo = tmp_path / "weights"
    shutil.copytree(root / "second", repo)
    (repo / "text_encoder" / "model.safetensors").unlink()  # never in the repo
    monkeypatch.setattr(E, "WEIGHTS_DIR", repo)
    monkeypatch.setenv("IMAGESTUDIO_CACHE", str(tmp_path / "cache"))
    folder = E.model_dir()
    weights = folder / "text_encoder" / "model.safetensors"
    assert weights.is_file() and not weights.is_symlink()
    merged = BertModel.from_pretrained(folder / "text_encoder").state_dict()
    _, package = encoder
    key = "encoder.layer.5.attention.self.query.weight"
    assert not torch.equal(merged[key], package.state_dict()[key])
    assert torch.equal(merged["embeddings.word_embeddings.weight"], package.state_dict()["embeddings.word_embeddings.weight"])


def test_the_position_probe_finds_positions_in_context_not_in_the_bare_words():
    """text_probe: the measurement that motivated training the text layers. The word
    embeddings alone (layer 0) cannot say where an object goes; the contextual layers can."""
    from imagestudio.embedded import text_probe

    acc = text_probe.position_probe(n=600)
    assert len(acc) == 7 and all(0 <= a <= 1 for a in acc)
    assert acc[0] < 0.4  # chance is about 0.2
    assert max(acc[1:]) > 0.5
