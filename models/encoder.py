"""The float reference encoder: embeddings, post-LN blocks, encoder, sequence classifier.

Reads top-down like BERT / DistilBERT; only the attention module differs between variants
(`models.attention`). Everything is built from one `EncoderConfig`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.attention import make_attention
from models.config import EncoderConfig


class Embeddings(nn.Module):
    """word + position [+ token type 0] embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden, padding_idx=cfg.pad_token_id)
        self.position = nn.Embedding(cfg.max_position, cfg.hidden)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.hidden) if cfg.type_vocab_size else None
        self.norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        x = self.word(input_ids) + self.position.weight[:n]  # (B, n, D)
        if self.token_type is not None:
            x = x + self.token_type.weight[0]  # every token is of type 0 (single sentences)
        return self.drop(self.norm(x))


class FeedForward(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.lin1 = nn.Linear(cfg.hidden, cfg.ffn)
        self.lin2 = nn.Linear(cfg.ffn, cfg.hidden)
        self.act = F.gelu if cfg.activation == "gelu" else F.relu  # F.gelu is the exact erf form
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.lin2(self.act(self.lin1(x))))


class Block(nn.Module):
    """Post-LN: x = LN(x + attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attn = make_attention(cfg)
        self.attn_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the block output and the attention context (merged heads, before `out_lin`)."""
        ctx = self.attn.context(x, mask)  # (B, n, D)
        x = self.attn_norm(x + self.drop(self.attn.out_lin(ctx)))
        x = self.ffn_norm(x + self.ffn(x))
        return x, ctx


@dataclass
class EncoderOutput:
    """`hidden_states`: embeddings output then each block's output (layers + 1 tensors, (B, n, D)).
    `contexts`: each block's attention context, merged heads BEFORE the output projection (B, n, D).
    """
    last_hidden: torch.Tensor
    hidden_states: list[torch.Tensor]
    contexts: list[torch.Tensor]


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> EncoderOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask  # (B, n)
        x = self.embeddings(input_ids)
        hidden, contexts = [x], []
        for block in self.blocks:
            x, ctx = block(x, mask)
            hidden.append(x)
            contexts.append(ctx)
        return EncoderOutput(x, hidden, contexts)


class SequenceClassifier(nn.Module):
    """Encoder + head on the first token.

    pooler 'bert': pool = dense + tanh (BertPooler), dropout, classifier.
    pooler 'distilbert': pool = pre_classifier + ReLU, dropout, classifier.
    num_labels == 1 means regression (one output, no softmax implied).
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.pool = nn.Linear(cfg.hidden, cfg.hidden)
        self.pool_act = torch.tanh if cfg.pooler == "bert" else F.relu
        self.drop = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.hidden, cfg.num_labels)
        self.apply(init_weights)

    def head(self, last_hidden: torch.Tensor) -> torch.Tensor:
        first = last_hidden[:, 0]  # (B, D)
        return self.classifier(self.drop(self.pool_act(self.pool(first))))  # (B, num_labels)

    def forward_all(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, EncoderOutput]:
        """Logits together with all hidden states and attention contexts (for distillation)."""
        out = self.encoder(input_ids, attention_mask)
        return self.head(out.last_hidden), out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_all(input_ids, attention_mask)[0]


def init_weights(module: nn.Module) -> None:
    """BERT's initialisation: normal(0, 0.02) weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
