"""Shared fixtures: tiny randomly initialised Hugging Face checkpoints saved into temporary folders."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = dict(vocab_size=99, max_position_embeddings=32, pad_token_id=0)


def _save(model, folder, safetensors=True):
    """save_pretrained; for pytorch_model.bin, which transformers 5 no longer writes
    (safe_serialization=False is gone), the config plus a torch.save of the state dict."""
    import torch
    if safetensors:
        model.eval().save_pretrained(folder)
    else:
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """BertModel (hidden 32, 2 layers, 4 heads, with pooler), saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(1)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, **TINY)
    return _save(BertModel(cfg), tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_bert_cls_dir(tmp_path_factory):
    """BertForSequenceClassification with 3 labels, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(2)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                     num_labels=3, **TINY)
    return _save(BertForSequenceClassification(cfg), tmp_path_factory.mktemp("tiny_bert_cls"))


def _distilbert(seed, cls):
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel
    torch.manual_seed(seed)
    cfg = DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37, num_labels=2, **TINY)
    return (DistilBertForSequenceClassification if cls else DistilBertModel)(cfg)


@pytest.fixture(scope="session")
def tiny_distilbert_dir(tmp_path_factory):
    """DistilBertModel (dim 32, 2 layers, 4 heads), saved as safetensors."""
    return _save(_distilbert(3, cls=False), tmp_path_factory.mktemp("tiny_distilbert"))


@pytest.fixture(scope="session")
def tiny_distilbert_cls_bin_dir(tmp_path_factory):
    """DistilBertForSequenceClassification saved as pytorch_model.bin."""
    return _save(_distilbert(4, cls=True), tmp_path_factory.mktemp("tiny_distilbert_bin"), safetensors=False)
