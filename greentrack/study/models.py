"""The study workloads: a small decoder-only transformer language model, defined here.

Sizes are configs, not downloads: ``small`` and ``base`` (:data:`SIZES`), and a student at half
the width of its teacher (:func:`student_of`). Attention projections are separate ``nn.Linear``
layers named ``q``, ``k``, ``v``, ``o`` (and the MLP ``up``, ``down``) so that LoRA can target
them by name, as the LoRA paper's Wq/Wv setting does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class LMConfig:
    vocab: int = 8192
    d_model: int = 512
    n_layers: int = 8
    n_heads: int = 8
    seq_len: int = 256


SIZES = {
    "tiny": LMConfig(vocab=512, d_model=64, n_layers=2, n_heads=2, seq_len=64),  # CI on CPU and the mock
    "small": LMConfig(vocab=8192, d_model=512, n_layers=8, n_heads=8, seq_len=256),
    "base": LMConfig(vocab=32768, d_model=1024, n_layers=16, n_heads=16, seq_len=512),
}


def student_of(cfg: LMConfig) -> LMConfig:
    """The distilled student: half the width (d_model and heads), the same depth and vocabulary."""
    return replace(cfg, d_model=cfg.d_model // 2, n_heads=max(1, cfg.n_heads // 2))


def build(cfg: LMConfig, checkpointing: bool = False) -> Any:
    """A freshly initialised model for *cfg* (torch imported here)."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812
    from torch.utils.checkpoint import checkpoint

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = cfg.d_model
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
            self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x: Any) -> Any:
            b, t, d = x.shape
            h = self.n1(x)
            q, k, v = (m(h).view(b, t, cfg.n_heads, d // cfg.n_heads).transpose(1, 2) for m in (self.q, self.k, self.v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
            return x + self.down(F.gelu(self.up(self.n2(x))))

    class TinyLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = cfg
            self.emb = nn.Embedding(cfg.vocab, cfg.d_model)
            self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layers))
            self.norm = nn.LayerNorm(cfg.d_model)
            self.checkpointing = checkpointing

        def forward(self, idx: Any, next_token_loss: bool = False) -> Any:
            """Logits, or with *next_token_loss* the language-modelling loss of *idx* (predict idx[t+1])."""
            t = idx.shape[1]
            x = self.emb(idx) + self.pos(torch.arange(t, device=idx.device))
            for blk in self.blocks:
                x = checkpoint(blk, x, use_reentrant=False) if (self.checkpointing and self.training) else blk(x)
            logits = self.norm(x) @ self.emb.weight.T  # tied head
            if not next_token_loss:
                return logits
            return F.cross_entropy(logits[:, :-1].float().reshape(-1, cfg.vocab), idx[:, 1:].reshape(-1))

    return TinyLM()
