"""Tiny transformers for the tests: a BERT-like encoder and a GPT-like causal decoder, saved as
ExportedPrograms with dynamic batch and sequence axes (what `torch.export.save` writes).

Small enough to export and build in seconds on 2 cores, yet the real thing: token and position
embeddings, multi-head self-attention (padding mask for the encoder, causal mask for the
decoder), LayerNorm, GELU feed-forward, a classification or language-model head.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

VOCAB, WIDTH, HEADS, FEED, LAYERS, MAX_SEQ = 64, 32, 4, 64, 2, 64
# The ranges the tests build with: gate and Triton at sequence lengths 1, 8 and 24.
SHAPES = {"min": 1, "opt": 8, "max": 24}


class TinyEncoder(nn.Module):
    """input_ids, attention_mask [batch, seq] -> logits [batch, 3] (first token, BERT-style).

    `scale` multiplies the logits: fine in fp32, but a scale past fp16's range (65504) cannot be
    represented in an fp16 engine, whose logits are then wrong. 1 is a correct model.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, WIDTH)
        self.positions = nn.Embedding(MAX_SEQ, WIDTH)
        layer = nn.TransformerEncoderLayer(
            WIDTH, HEADS, FEED, dropout=0.0, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, 3)
        self.scale = scale

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
        hidden = self.tokens(input_ids) + self.positions(positions)
        hidden = self.encoder(hidden, src_key_padding_mask=attention_mask == 0)
        return self.head(self.norm(hidden)[:, 0]) * self.scale


class TinyDecoder(nn.Module):
    """input_ids [batch, seq] -> logits [batch, seq, VOCAB], each position seeing only itself
    and the positions before it (GPT-style)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, WIDTH)
        self.positions = nn.Embedding(MAX_SEQ, WIDTH)
        layer = nn.TransformerEncoderLayer(
            WIDTH, HEADS, FEED, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        positions = torch.arange(seq).unsqueeze(0)
        hidden = self.tokens(input_ids) + self.positions(positions)
        causal = torch.triu(torch.full((seq, seq), float("-inf")), diagonal=1)
        hidden = self.blocks(hidden, mask=causal, is_causal=True)
        return self.lm_head(self.norm(hidden))


@dataclass
class Transformer:
    """A tiny transformer, its inputs' names, and how to sample and evaluate it."""

    name: str
    module: nn.Module
    inputs: tuple[str, ...]
    output: str

    def sample(self, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
        """Token ids (and an all-ones mask for the encoder) of the given shape."""
        rng = np.random.default_rng(seed)
        feeds = {"input_ids": rng.integers(0, VOCAB, size=(batch, seq), dtype=np.int64)}
        if "attention_mask" in self.inputs:
            feeds["attention_mask"] = np.ones((batch, seq), dtype=np.int64)
        return feeds

    def reference(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """What torch computes."""
        with torch.no_grad():
            out = self.module(*(torch.from_numpy(feeds[n]) for n in self.inputs))
        return np.asarray(out.numpy())

    def shapes(self, **bounds: int) -> list[dict[str, Any]]:
        """spec.build.shapes giving every input the sequence range (SHAPES unless overridden)."""
        seq = SHAPES | bounds
        return [
            {"name": n, "min": [seq["min"]], "opt": [seq["opt"]], "max": [seq["max"]]}
            for n in self.inputs
        ]

    def save(self, path: Path) -> str:
        """torch.export the model (dynamic batch and sequence) to `path`; its sha256."""
        example = tuple(torch.from_numpy(a) for a in self.sample(2, 8).values())
        batch = torch.export.Dim("batch", min=1, max=64)
        seq = torch.export.Dim("seq", min=1, max=MAX_SEQ)
        shapes = tuple({0: batch, 1: seq} for _ in self.inputs)
        program = torch.export.export(self.module, example, dynamic_shapes=shapes)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, path)
        return hashlib.sha256(path.read_bytes()).hexdigest()


def encoder(seed: int = 0, scale: float = 1.0) -> Transformer:
    """The BERT-like encoder, weights fixed by `seed`, in eval mode."""
    torch.manual_seed(seed)
    return Transformer(
        "encoder", TinyEncoder(scale).eval(), ("input_ids", "attention_mask"), "logits"
    )


def decoder(seed: int = 0) -> Transformer:
    """The GPT-like causal decoder, weights fixed by `seed`, in eval mode."""
    torch.manual_seed(seed)
    return Transformer("decoder", TinyDecoder().eval(), ("input_ids",), "logits")
