"""Make the transformer examples: a BERT-like encoder and a GPT-like causal decoder.

Small random-weight torch models (weights fixed by a seed), saved with `torch.export.save` as
ExportedPrograms with dynamic batch and sequence axes, into examples/models/, and their sha256
written into examples/bert-encoder.yaml and examples/gpt-decoder.yaml. `modelops dev` then
builds them through the dynamo exporter and serves them on the CPU:

    .venv/bin/python hack/make-transformer-examples.py
    .venv/bin/modelops dev examples/bert-encoder.yaml

The .pt2 bytes are not reproducible (torch writes a random serialization id into each archive),
so rerunning this script changes the files and their sha256 together.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"
SEED = 20240601
VOCAB, WIDTH, HEADS, FEED, LAYERS, MAX_SEQ, LABELS = 512, 64, 4, 256, 2, 128, 2


def _layer(norm_first: bool) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        WIDTH, HEADS, FEED, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
    )


class BertLike(nn.Module):
    """input_ids, attention_mask [batch, seq] -> logits [batch, LABELS] from the first token."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, WIDTH)
        self.positions = nn.Embedding(MAX_SEQ, WIDTH)
        self.embedding_norm = nn.LayerNorm(WIDTH)
        self.encoder = nn.TransformerEncoder(_layer(False), LAYERS, enable_nested_tensor=False)
        self.pooler = nn.Linear(WIDTH, WIDTH)
        self.classifier = nn.Linear(WIDTH, LABELS)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
        hidden = self.embedding_norm(self.tokens(input_ids) + self.positions(positions))
        hidden = self.encoder(hidden, src_key_padding_mask=attention_mask == 0)
        return self.classifier(torch.tanh(self.pooler(hidden[:, 0])))


class GptLike(nn.Module):
    """input_ids [batch, seq] -> next-token logits [batch, seq, VOCAB] (causal self-attention)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, WIDTH)
        self.positions = nn.Embedding(MAX_SEQ, WIDTH)
        self.blocks = nn.TransformerEncoder(_layer(True), LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)
        self.lm_head.weight = self.tokens.weight  # tied, as in GPT-2

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        positions = torch.arange(seq).unsqueeze(0)
        hidden = self.tokens(input_ids) + self.positions(positions)
        causal = torch.triu(torch.full((seq, seq), float("-inf")), diagonal=1)
        hidden = self.blocks(hidden, mask=causal, is_causal=True)
        return self.lm_head(self.norm(hidden))


def export(module: nn.Module, names: tuple[str, ...], path: Path) -> str:
    """torch.export with dynamic batch and sequence, torch.export.save; the file's sha256."""
    ones = torch.ones(2, 16, dtype=torch.long)
    example = tuple(torch.randint(1, VOCAB, (2, 16)) if n == "input_ids" else ones for n in names)
    batch = torch.export.Dim("batch", min=1, max=64)
    seq = torch.export.Dim("seq", min=1, max=MAX_SEQ)
    program = torch.export.export(
        module.eval(), example, dynamic_shapes=tuple({0: batch, 1: seq} for _ in names)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_sha256(yaml_path: Path, digest: str) -> None:
    """Replace the sha256 line of the example (the only one in the file)."""
    text = yaml_path.read_text()
    updated, count = re.subn(r"sha256: [0-9a-f]{64}", f"sha256: {digest}", text)
    if count != 1:
        raise SystemExit(f"{yaml_path}: expected exactly one sha256 line, found {count}")
    yaml_path.write_text(updated)


def main() -> int:
    """Export both models and update the examples' sha256."""
    for cls, names, stem in (
        (BertLike, ("input_ids", "attention_mask"), "bert-encoder"),
        (GptLike, ("input_ids",), "gpt-decoder"),
    ):
        torch.manual_seed(SEED)
        path = MODELS / f"{stem}.pt2"
        digest = export(cls(), names, path)
        set_sha256(ROOT / "examples" / f"{stem}.yaml", digest)
        size = path.stat().st_size
        print(f"{digest}  {path.relative_to(ROOT)} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
