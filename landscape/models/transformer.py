"""A small decoder-only byte-level transformer: ``--model transformer``.

Interface (names are what ``--layer`` and :func:`landscape.models.variants.make_variant` use)::

    forward(tokens)          LongTensor (B, T), T <= context, values 0..255 -> logits (B, T, 256)
    embed                    nn.Embedding(256, width): token embedding
    pos                      nn.Embedding(context, width): learned positions
    blocks.i                 block i (i = 0 .. depth-1); its output is the residual stream after it
    blocks.i.ln1, .ln2       pre-LayerNorms of the attention and MLP branches
    blocks.i.attn            causal self-attention (blocks.i.attn.qkv, blocks.i.attn.proj)
    blocks.i.mlp.act         GELU: the MLP neurons (4 * width of them)
    ln_f                     final LayerNorm
    head                     nn.Linear(width, 256, bias=False); tied: head.weight is embed.weight
    forward_embedded(e)      the same network from token embeddings e (B, T, width)

GPT-2's layout (Radford et al. 2019): pre-LayerNorm residual blocks
``h = h + attn(ln1(h)); h = h + mlp(ln2(h))``, learned absolute positions, an
MLP ``width -> 4 width -> width`` with GELU, no dropout (analyses must be
deterministic).  The vocabulary is the 256 byte values, so no tokenizer.

Units.  A unit of a layer is one feature of its output at one position,
``model.unit_position`` (``--position``, default -1: the last position, which
attends to the whole window): ``blocks.i`` gives residual-stream units
(``width`` of them), ``blocks.i.mlp.act`` MLP neurons (``4 width``).  The
default layer is the last block's output.

Inputs are discrete, so input-space analyses (input slices, input Hessians,
gradient-ascent maxima) act on the continuous token embeddings:
:meth:`Transformer.input_view` returns :class:`EmbeddedTransformer`, the same
modules (shared parameters, same layer names) taking ``(B, T, width)``
embeddings, and the embedded data.  Positions are added inside, so only the
token part of the input moves.

Default initialisation (``--init default``) is GPT-2's: every linear weight and
both embedding tables N(0, 0.02²), the output projection of each branch
(``attn.proj``, ``mlp.proj``) N(0, (0.02 / sqrt(2 depth))²) so the residual
stream's variance does not grow with depth, zero biases, LayerNorm weight 1 and
shift 0.  The named schemes of :mod:`landscape.init` re-draw every linear weight
and the two embedding tables (each as the linear map from one-hot inputs it is).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import LandscapeError
from .registry import register

VOCAB = 256
DEFAULTS = {"width": 128, "depth": 2, "heads": 4, "context": 64}
GPT2_STD = 0.02

# What `landscape train --model transformer` uses unless told otherwise
# (docs/guide/transformer.md: about ten minutes on two CPU cores).
TRAIN_DEFAULTS = {"optimizer": "adamw", "lr": 3e-3, "batch_size": 32, "epochs": 1,
                  "samples": 96_000, "test_samples": 1024, "weight_decay": 0.1,
                  "schedule": "cosine", "warmup": 100, "clip": 1.0}


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t attends to positions <= t."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in self.qkv(h).split(d, dim=-1))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        future = torch.ones(t, t, dtype=torch.bool, device=h.device).triu(1)
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc = nn.Linear(width, 4 * width)
        self.act = nn.GELU()
        self.proj = nn.Linear(4 * width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(h)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))


class Transformer(nn.Module):
    """Decoder-only transformer over bytes; see the module docstring."""

    def __init__(self, width: int = DEFAULTS["width"], depth: int = DEFAULTS["depth"],
                 heads: int = DEFAULTS["heads"], context: int = DEFAULTS["context"],
                 tied: bool = True, position: int = -1):
        super().__init__()
        for name, value in (("width", width), ("depth", depth), ("heads", heads),
                            ("context", context)):
            if int(value) != value or value < 1:
                raise LandscapeError(f"transformer: {name} must be a positive integer, got {value!r}")
        if width % heads:
            raise LandscapeError(f"transformer: width ({width}) must be a multiple of heads ({heads})")
        if not -context <= position < context:
            raise LandscapeError(f"transformer: position must lie in {-context}..{context - 1}, "
                                 f"got {position}")
        self.width, self.depth, self.heads, self.context = width, depth, heads, context
        self.tied = bool(tied)
        self.embed = nn.Embedding(VOCAB, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB, bias=False)
        if self.tied:
            self.head.weight = self.embed.weight
        self.in_shape = (context,)
        self.num_classes = VOCAB
        self.unit_position = int(position)
        self.default_layer = f"blocks.{depth - 1}"
        self.default_dataset = "pysource"
        self.train_defaults = dict(TRAIN_DEFAULTS)
        gpt2_init(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise LandscapeError(
                f"transformer: input must hold token ids (an integer tensor B x T), got {tokens.dtype}; "
                "input-space analyses take the embedded view (Transformer.input_view)")
        return self.forward_embedded(self.embed(tokens))

    def forward_embedded(self, e: torch.Tensor) -> torch.Tensor:
        """Logits from token embeddings ``e (B, T, width)`` (positions are added here)."""
        t = e.shape[-2]
        if t > self.context:
            raise LandscapeError(f"transformer: sequence of {t} tokens exceeds the context "
                                 f"of {self.context}")
        h = e + self.pos(torch.arange(t, device=e.device))
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))

    @torch.no_grad()
    def input_view(self, tokens: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
        """``(view, embeddings)`` for input-space analyses: :class:`EmbeddedTransformer`
        over this model and ``embed(tokens)`` detached, shape ``(N, T, width)``."""
        return EmbeddedTransformer(self), self.embed(tokens).detach()


class EmbeddedTransformer(nn.Module):
    """A :class:`Transformer` that takes token embeddings ``(B, T, width)`` instead
    of token ids.  It holds the very same modules (parameters are shared, names are
    the same: ``blocks.0``, ``blocks.0.mlp.act``, ...), so analysing it analyses the
    transformer; ``in_shape`` is ``(context, width)``."""

    def __init__(self, model: Transformer):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        self.tied = model.tied
        for attr in ("name", "task", "init", "bias_scale", "num_classes", "unit_position",
                     "default_layer", "context", "width", "recipe"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))
        self.in_shape = (model.context, model.width)
        self.space = "token embeddings"

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return Transformer.forward_embedded(self, e)

    @classmethod
    def view_of(cls, model: Transformer) -> EmbeddedTransformer:
        """The same view of another transformer (e.g. a null model drawn from the recipe)."""
        return cls(model)


@torch.no_grad()
def gpt2_init(model: nn.Module) -> None:
    """GPT-2's initialisation, in place (module docstring)."""
    depth = sum(1 for name, _ in model.named_modules() if name.count(".") == 1
                and name.startswith("blocks."))
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            residual_out = name.endswith("attn.proj") or name.endswith("mlp.proj")
            std = GPT2_STD / math.sqrt(2 * max(1, depth)) if residual_out else GPT2_STD
            if not (model.tied and name == "head"):  # tied: the embedding is drawn once
                nn.init.normal_(m.weight, 0.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_transformer(num_classes: int, in_shape=None, width: int = DEFAULTS["width"],
                      depth: int = DEFAULTS["depth"], heads: int = DEFAULTS["heads"],
                      context: int = DEFAULTS["context"], tied: bool = True,
                      position: int = -1) -> Transformer:
    """The registry's builder (``num_classes`` and ``in_shape`` are fixed: 256 bytes
    in and out, ``context`` tokens)."""
    if in_shape is not None:
        raise LandscapeError("model 'transformer' takes no in_shape; its input is a window of "
                             "--context bytes")
    return Transformer(width=width, depth=depth, heads=heads, context=context, tied=tied,
                       position=position)


# Token windows: the input shape is (context,), set by the model itself.
register("transformer", build_transformer, (DEFAULTS["context"],), "classify",
         ("width", "depth", "heads", "context", "tied", "position"))
