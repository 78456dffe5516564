"""BERT-family backbone pieces (BERT, RoBERTa, MiniLM) written out explicitly.

Why not reuse ``transformers``' modules: token pruning needs the attention probabilities of every pruning layer,
real gathers between the attention block and the FFN, and graphs that the dynamo exporter turns into plain ONNX ops.
HF's attention implementations hide the probabilities behind SDPA dispatch and carry cache/position machinery that
is irrelevant here. The layers below hold the same parameters under the same names as HF's, so state dicts load
one-to-one (see :func:`pruneport.methods.checkpoint.load_backbone_state`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module] | functools.partial] = {
    "gelu": nn.GELU,
    "gelu_new": functools.partial(nn.GELU, approximate="tanh"),
    "gelu_pytorch_tanh": functools.partial(nn.GELU, approximate="tanh"),
    "relu": nn.ReLU,
}


@dataclass(frozen=True)
class BackboneConfig:
    """The sizes of a BERT-family encoder, read from a HF ``config.json`` dict."""

    model_type: str  # "bert" or "roberta" (MiniLM is "bert")
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str
    pad_token_id: int
    num_labels: int
    hidden_dropout_prob: float = 0.1

    @classmethod
    def from_hf_dict(cls, config: dict[str, Any]) -> BackboneConfig:
        """Build from a HF config dict; ``model_type`` "ltp"/"ibert"/"xlm-roberta" map to "roberta"."""
        model_type = str(config.get("model_type", "bert"))
        if model_type in {"ltp", "ibert", "roberta", "xlm-roberta", "camembert"}:
            model_type = "roberta"
        elif model_type not in {"bert", "distilbert"}:
            model_type = "bert"
        num_labels = config.get("num_labels")
        if num_labels is None:
            num_labels = len(config.get("id2label", {})) or 2
        act = config.get("hidden_act", "gelu")
        if act not in _ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {act!r}; supported: {sorted(_ACTIVATIONS)}")
        return cls(
            model_type=model_type,
            vocab_size=int(config["vocab_size"]),
            hidden_size=int(config["hidden_size"]),
            num_hidden_layers=int(config["num_hidden_layers"]),
            num_attention_heads=int(config["num_attention_heads"]),
            intermediate_size=int(config["intermediate_size"]),
            max_position_embeddings=int(config["max_position_embeddings"]),
            type_vocab_size=int(config.get("type_vocab_size", 2)),
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
            hidden_act=act,
            pad_token_id=int(config.get("pad_token_id", 0) or 0),
            num_labels=int(num_labels),
            hidden_dropout_prob=float(config.get("hidden_dropout_prob", 0.1)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (the export manifest's ``backbone``)."""
        return asdict(self)

    @property
    def uses_token_type_ids(self) -> bool:
        """True when the backbone has more than one token type (BERT), so the graph takes ``token_type_ids``."""
        return self.type_vocab_size > 1

    @property
    def max_tokens(self) -> int:
        """Longest input the position table allows (RoBERTa reserves ``pad_token_id + 1`` positions)."""
        if self.model_type == "roberta":
            return self.max_position_embeddings - self.pad_token_id - 1
        return self.max_position_embeddings


class Embeddings(nn.Module):
    """Word + position + token-type embeddings and LayerNorm, as HF's BertEmbeddings / RobertaEmbeddings."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, live: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """input_ids, live (bool), token_type_ids: [batch, seq] -> [batch, seq, hidden]. Inputs are right-padded."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        if self.cfg.model_type == "roberta":
            positions = (positions + 1) * live.long() + self.cfg.pad_token_id
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    """Q/K/V projections and scaled dot-product attention that also returns the probabilities."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        live: torch.Tensor,
        key_weights: torch.Tensor | None = None,
        query_rows: int | None = None,
        renormalize: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B,S,D], live [B,S] -> context [B,S,D], probabilities [B,H,S,S] (0 on dead keys).

        key_weights [B,S] (optional): multiplies the probabilities of each key *after* the softmax, with no
        renormalization (Transkimmer ``master`` semantics); None leaves the attention unchanged.
        renormalize: divide the weighted probabilities by their sum again, which is the softmax of
        ``scores + log(key_weights)`` with differentiable weights (the soft masks of the trainers; never exported).
        query_rows (optional): compute queries, context and probabilities for the first ``query_rows`` positions
        only (context [B,Q,D], probabilities [B,H,Q,S]); keys and values still come from every position.
        """
        xq = x if query_rows is None else x[:, :query_rows]
        q, k, v = self._heads(self.query(xq)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        # where(live, scores, min) rather than masked_fill(~live, min): the same values without a Not per layer
        # (OpenVINO ran that Not at about 36 us per layer at batch 1; docs/prune_overhead.md)
        scores = torch.where(live[:, None, None, :], scores, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1)
        if key_weights is not None:
            probs = probs * key_weights[:, None, None, :].to(probs.dtype)
            if renormalize:
                probs = probs / probs.sum(-1, keepdim=True).clamp_min(torch.finfo(probs.dtype).tiny)
        context = torch.matmul(probs, v).transpose(1, 2).flatten(2)
        return context, probs


class DenseLayerNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)``: HF's BertSelfOutput / BertOutput."""

    def __init__(self, d_in: int, d_out: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """x [..., d_in], residual [..., d_out] -> ``LayerNorm(dropout(dense(x)) + residual)`` [..., d_out]."""
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    """Self-attention plus output projection (HF's BertAttention: ``self`` and ``output``)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.self = SelfAttention(cfg)
        self.output = DenseLayerNorm(cfg.hidden_size, cfg.hidden_size, cfg.layer_norm_eps, cfg.hidden_dropout_prob)

    def forward(
        self,
        x: torch.Tensor,
        live: torch.Tensor,
        key_weights: torch.Tensor | None = None,
        query_rows: int | None = None,
        renormalize: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`SelfAttention.forward`; with ``query_rows`` the output covers the first query_rows positions."""
        context, probs = self.self(x, live, key_weights, query_rows, renormalize)
        residual = x if query_rows is None else x[:, :query_rows]
        return self.output(context, residual), probs


class Intermediate(nn.Module):
    """The FFN's first half, ``act(dense(x))`` from hidden to intermediate size (HF's BertIntermediate)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = _ACTIVATIONS[cfg.hidden_act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B,S,hidden] -> [B,S,intermediate_size]."""
        return self.act(self.dense(x))


class EncoderLayer(nn.Module):
    """One transformer layer split in two halves so that a pruner can act between them."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = DenseLayerNorm(
            cfg.intermediate_size, cfg.hidden_size, cfg.layer_norm_eps, cfg.hidden_dropout_prob
        )

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's second half: intermediate, output projection, residual and LayerNorm; [B,S,D] -> [B,S,D]."""
        return self.output(self.intermediate(x), x)


class ClassificationHead(nn.Module):
    """Sequence classification on CLS: BERT's pooler + classifier, or RoBERTa's ``classifier.dense/out_proj``.

    Parameter names follow HF so that ``pooler.dense.*`` / ``classifier.*`` (BERT) and ``classifier.dense.*`` /
    ``classifier.out_proj.*`` (RoBERTa) load directly; see :func:`head_state_prefixes`.
    """

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        """CLS states [B,D] -> logits [B,num_labels]: dense, tanh, out_proj (dropout before each Linear)."""
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(cls)))))
