"""TopK sparse autoencoders: Gao et al. 2024, *Scaling and evaluating sparse
autoencoders* (arXiv 2406.04093).

The autoencoder of an activation ``x ∈ R^d`` with ``M = expansion · d`` latents:

    x̃ = x / s                                   (the trainer's normalisation, below)
    z = TopK_k(ReLU(W_enc (x̃ − b_dec) + b_enc))  (the k largest, the rest set to 0)
    x̂ = s · (Σ_j z_j W_dec[j] + b_dec)

``W_dec`` is ``(M, d)`` with unit-norm rows (one dictionary atom per latent);
``b_dec`` is both the decoder bias and the encoder's pre-bias.

**Normalisation.**  Training divides every activation by one scalar
``s = sqrt(mean_i ‖x_i‖² / d)`` measured on the training activations, so that
``E‖x̃‖² = d``.  ``s`` is kept in the module (buffer ``scale``):
:meth:`TopKSAE.encode` takes raw activations and :meth:`TopKSAE.decode` returns
them, so callers never see the normalisation; latent values are in units of
``s``.  The FVU is unchanged by this scaling.

**Initialisation.**  Decoder rows are Gaussian directions normalised to unit
length; the encoder is the decoder's transpose (``W_enc = W_dec``);
``b_enc = 0``; ``b_dec`` is the mean of the normalised training activations.

**Loss.**  ``L = ‖x̃ − x̂/s‖² / V + α ‖e − ê‖² / V`` summed over a batch, where
``V = Σ ‖x̃ − mean x̃‖²`` is the batch's total variance (so the first term is the
batch FVU), ``e`` the (detached) residual, and ``ê`` the reconstruction of ``e``
by the ``k_aux`` dead latents with the largest pre-activations (before the
ReLU), without ``b_dec`` (the AuxK loss, Gao et al. §A.2; ``α = 1/32``,
``k_aux = d/2`` by default).  The AuxK term's gradient passes the ReLU as the
identity (straight through), so that a latent negative on every input can be
trained back; the main term's gradient is the exact one, zero through a
selected latent the ReLU holds at 0.  A latent is *dead* for AuxK when it has not fired on the last
``dead_after`` training activations (Gao et al. use 10 M; by default here
``min(10 M, max(1, tokens/20))``, since the runs are short).

**Optimisation.**  Adam (β = 0.9, 0.999, ε = 6.25e-10 as in the paper) with
learning rate ``5e-3 / sqrt(M / 2^14)``: the paper's scaling with the number of
latents, with the constant of sparsify's default (Gao et al.'s ``2e-4`` is meant
for runs of 10⁵ steps; on runs of a few hundred steps it leaves the FVU several
times higher, ``bench/RESULTS.md``), linear warm-up over the first 5 % of steps
and linear decay to 0 over the last 20 %.  Before each step the gradient component of ``W_dec`` parallel
to each row is removed; after each step the rows are renormalised.

The encoder's backward pass is sparse: only the ``k`` selected (and ``k_aux``
dead) latents of each activation carry gradient, so its cost is ``O(N k d)``
instead of the ``O(N M d)`` of a dense backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LandscapeError

AUX_COEF = 1 / 32
DEAD_AFTER_MAX = 10_000_000


class _SelectedPreacts(torch.autograd.Function):
    """``values[n, j] = ReLU(W[idx[n, j]] · x[n] + b[idx[n, j]])`` with a sparse backward
    pass.

    The forward pass takes the values already computed by the dense encoder
    matmul; the backward pass scatters the gradient into the selected rows
    only, and none through a selected latent the ReLU holds at zero (when fewer
    than k pre-activations are positive).  With ``straight_through`` the
    gradient passes the ReLU as if it were the identity: what AuxK uses, so
    that a latent whose pre-activation went negative on every input can be
    trained back."""

    @staticmethod
    def forward(ctx, values, idx, x, weight, bias, straight_through=False):
        active = torch.ones_like(values, dtype=torch.bool) if straight_through else values > 0
        ctx.save_for_backward(idx, x, weight, active)
        ctx.n_latents = bias.shape[0]
        return values

    @staticmethod
    def backward(ctx, grad):
        idx, x, weight, active = ctx.saved_tensors
        grad = grad * active
        n, k = idx.shape
        flat = idx.reshape(-1)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[2]:
            grad_x = F.embedding_bag(idx, weight, per_sample_weights=grad.to(weight.dtype), mode="sum")
        if ctx.needs_input_grad[3]:
            # grad_W = G^T x with G (n, M) holding k entries per row: a sparse product.
            rows = torch.arange(n, device=idx.device).repeat_interleave(k)
            g = torch.sparse_coo_tensor(torch.stack([flat, rows]), grad.reshape(-1),
                                        (ctx.n_latents, n), check_invariants=False)
            grad_w = torch.sparse.mm(g, x)
        if ctx.needs_input_grad[4]:
            grad_b = torch.zeros(ctx.n_latents, dtype=grad.dtype, device=grad.device)
            grad_b.index_add_(0, flat, grad.reshape(-1))
        return None, None, grad_x, grad_w, grad_b, None


class TopKSAE(nn.Module):
    """A TopK sparse autoencoder (module docstring).  ``encode`` returns dense
    latents ``(N, M)``; ``encode_sparse`` the top-k values and indices."""

    def __init__(self, d: int, n_latents: int, k: int, *, scale: float = 1.0, seed: int = 0,
                 dtype=torch.float32):
        super().__init__()
        if not 1 <= k <= n_latents:
            raise LandscapeError(f"k: must lie in 1..{n_latents} (the number of latents), got {k}")
        gen = torch.Generator().manual_seed(seed)
        w = torch.randn(n_latents, d, generator=gen, dtype=dtype)
        w /= w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w.clone())
        self.W_enc = nn.Parameter(w.clone())
        self.b_enc = nn.Parameter(torch.zeros(n_latents, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d, dtype=dtype))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=dtype))
        self.k = int(k)

    @property
    def d(self) -> int:
        return self.W_dec.shape[1]

    @property
    def n_latents(self) -> int:
        return self.W_dec.shape[0]

    def extra_repr(self) -> str:
        return f"d={self.d}, n_latents={self.n_latents}, k={self.k}"

    # -- the maths of the module docstring, on normalised activations
    def preacts(self, xn: torch.Tensor) -> torch.Tensor:
        """``ReLU(W_enc (x̃ − b_dec) + b_enc)`` of normalised activations ``x̃``."""
        return F.relu(F.linear(xn - self.b_dec, self.W_enc, self.b_enc))

    def _topk(self, xn: torch.Tensor, dead: torch.Tensor | None = None, k_aux: int = 0):
        """Top-k values (differentiable, sparse backward) and indices; with ``dead``,
        also the top-``k_aux`` dead latents'."""
        centred = xn - self.b_dec
        with torch.no_grad():
            pre = F.linear(centred, self.W_enc, self.b_enc)
            aux = None
            if dead is not None and k_aux > 0:
                # Dead latents ranked by their pre-activations before the ReLU, which
                # still order those that are negative everywhere.
                dead_idx = dead.nonzero().squeeze(1)
                avals, apos = pre.index_select(1, dead_idx).topk(k_aux, dim=1, sorted=False)
                aux = (avals.relu_(), dead_idx[apos])
            vals, idx = pre.relu_().topk(self.k, dim=1, sorted=False)
        vals = _SelectedPreacts.apply(vals, idx, centred, self.W_enc, self.b_enc)
        if aux is not None:
            aux = (_SelectedPreacts.apply(aux[0], aux[1], centred, self.W_enc, self.b_enc, True),
                   aux[1])
        return vals, idx, aux

    def _decode_sparse(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(idx, self.W_dec, per_sample_weights=vals, mode="sum")

    # -- the public face: raw activations in, raw activations out
    def encode_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k latent values and their indices, each ``(N, k)``."""
        vals, idx, _ = self._topk(x / self.scale)
        return vals, idx

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense latents ``z (N, M)``: zero except the top ``k`` of each row."""
        vals, idx = self.encode_sparse(x)
        z = torch.zeros(x.shape[0], self.n_latents, dtype=vals.dtype, device=vals.device)
        return z.scatter(1, idx, vals)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Activations ``x̂ (N, d)`` from dense latents ``z (N, M)``."""
        return self.scale * (z @ self.W_dec + self.b_dec)

    def decode_sparse(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.scale * (self._decode_sparse(vals, idx) + self.b_dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction ``x̂`` of ``x``."""
        return self.decode_sparse(*self.encode_sparse(x))

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the component of ``W_dec.grad`` parallel to each row of ``W_dec``."""
        g = self.W_dec.grad
        if g is not None:
            g.sub_((g * self.W_dec).sum(dim=1, keepdim=True) * self.W_dec)

    def config(self) -> dict:
        return {"d": self.d, "n_latents": self.n_latents, "k": self.k}

    @classmethod
    def from_state(cls, state: dict) -> TopKSAE:
        """Rebuild a module from ``{"config": ..., "state_dict": ...}`` (see :func:`sae_state`)."""
        cfg = state["config"]
        sae = cls(int(cfg["d"]), int(cfg["n_latents"]), int(cfg["k"]))
        sae.load_state_dict(state["state_dict"])
        return sae


def sae_state(sae: TopKSAE, **extra) -> dict:
    """What :meth:`TopKSAE.from_state` needs, plus ``extra`` (training settings)."""
    return {"config": sae.config(), "state_dict": {k: v.detach().cpu() for k, v in
                                                   sae.state_dict().items()}, **extra}


def default_lr(n_latents: int) -> float:
    """The default learning rate for ``n_latents`` latents: ``5e-3 / sqrt(M / 2^14)``
    (module docstring)."""
    return 5e-3 / math.sqrt(n_latents / 2**14)


def _schedule(step: int, total: int) -> float:
    """Learning-rate factor: linear warm-up (first 5 %), flat, linear decay (last 20 %)."""
    warm = max(1, int(0.05 * total))
    decay = max(1, int(0.2 * total))
    if step < warm:
        return (step + 1) / warm
    return min(1.0, (total - step) / decay)


class _Adam:
    """Adam (Kingma & Ba 2015) with bias correction, written out: ``torch.optim``
    imports the compiler stack on first use, seconds that a short run cannot spare."""

    def __init__(self, params, betas=(0.9, 0.999), eps=6.25e-10):
        self.params = list(params)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.t += 1
        c1 = 1 - self.beta1 ** self.t
        c2 = 1 - self.beta2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(self.beta1).add_(p.grad, alpha=1 - self.beta1)
            v.mul_(self.beta2).addcmul_(p.grad, p.grad, value=1 - self.beta2)
            p.addcdiv_(m, v.div(c2).sqrt_().add_(self.eps), value=-lr / c1)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LandscapeError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return value


def train_sae(acts: torch.Tensor, expansion: int = 16, k: int = 32, seed: int = 0, *,
              n_latents: int | None = None, aux_k: int | None = None, aux_coef: float = AUX_COEF,
              tokens: int | None = None, epochs: int = 1, lr: float | None = None,
              batch_size: int = 4096, dead_after: int | None = None, device=None,
              progress: Callable[[int, str], object] | None = None,
              history: list | None = None) -> TopKSAE:
    """Train a TopK SAE (module docstring) on the rows of ``acts (N, d)``.

    ``tokens``: how many activations to train on per epoch (default all ``N``;
    a seeded random subset when fewer); each epoch visits them in a fresh random
    order in batches of ``batch_size``.  ``n_latents`` overrides
    ``expansion · d``; ``aux_k = 0`` turns AuxK off.  ``history``, when a list,
    receives ``(step, fvu, dead_fraction)`` every step.  ``acts`` is not changed.

    Example: ``x = c @ D`` with a unit-norm dictionary ``D`` and ``k``-sparse
    non-negative codes ``c`` is reconstructed with FVU near 0, and the rows of
    the trained ``W_dec`` match the rows of ``D`` (max cosine near 1).
    """
    if not isinstance(acts, torch.Tensor) or acts.dim() != 2:
        shape = tuple(acts.shape) if isinstance(acts, torch.Tensor) else type(acts).__name__
        raise LandscapeError(f"acts: expected a (N, d) tensor of activations, got {shape}")
    n, d = acts.shape
    if n < 2:
        raise LandscapeError(f"acts: need at least 2 activations, got {n}")
    if not torch.isfinite(acts).all():
        raise LandscapeError("acts: holds NaN or infinite values")
    _check_int("expansion", expansion)
    _check_int("k", k)
    _check_int("epochs", epochs)
    _check_int("batch_size", batch_size)
    m = _check_int("n_latents", n_latents) if n_latents is not None else expansion * d
    if k > m:
        raise LandscapeError(f"k: must be <= the number of latents ({m}), got {k}")
    tokens = n if tokens is None else _check_int("tokens", tokens)
    tokens = min(tokens, n)
    aux_k = min(d // 2 if aux_k is None else _check_int("aux_k", aux_k, 0), m)
    dead_after = (min(DEAD_AFTER_MAX, max(1, tokens // 20)) if dead_after is None
                  else _check_int("dead_after", dead_after))
    lr = default_lr(m) if lr is None else float(lr)
    if not lr > 0:
        raise LandscapeError(f"lr: must be > 0, got {lr}")
    device = torch.device(device) if device is not None else acts.device

    gen = torch.Generator().manual_seed(seed)
    subset = torch.randperm(n, generator=gen)[:tokens] if tokens < n else None
    with torch.no_grad():
        source = acts if subset is None else acts[subset.to(acts.device)]
        source = source.float()
        scale = float(source.pow(2).sum(dim=1).mean().div(d).sqrt())
        if not scale > 0:
            raise LandscapeError("acts: every activation is zero; nothing to learn")
        sae = TopKSAE(d, m, k, scale=scale, seed=seed).to(device)
        sae.b_dec.copy_(source.mean(dim=0).to(device) / scale)

    steps_per_epoch = math.ceil(tokens / batch_size)
    total = steps_per_epoch * epochs
    opt = _Adam(sae.parameters())
    since_fired = torch.zeros(m, dtype=torch.long, device=device)
    bar = progress(total, "sae") if progress is not None else None
    step = 0
    for _ in range(epochs):
        order = torch.randperm(tokens, generator=gen)
        for begin in range(0, tokens, batch_size):
            rows = order[begin:begin + batch_size].to(source.device)
            xn = source[rows].to(device, non_blocking=True) / sae.scale
            dead = since_fired > dead_after if aux_k > 0 else None
            n_dead = int(dead.sum()) if dead is not None else 0
            vals, idx, aux = sae._topk(xn, dead if n_dead else None, min(aux_k, n_dead))
            recon = sae._decode_sparse(vals, idx) + sae.b_dec
            variance = (xn - xn.mean(dim=0)).pow(2).sum().clamp_min(1e-12)
            err = xn - recon
            fvu = err.pow(2).sum() / variance
            loss = fvu
            if aux is not None:
                # Dead latents learn to explain what the live ones leave.
                e_hat = sae._decode_sparse(*aux)
                loss = loss + aux_coef * (err.detach() - e_hat).pow(2).sum() / variance
            opt.zero_grad()
            loss.backward()
            sae.project_decoder_grad()
            opt.step(lr * _schedule(step, total))
            sae.normalise_decoder()
            with torch.no_grad():
                fired = torch.zeros(m, dtype=torch.bool, device=device)
                fired[idx[vals > 0]] = True
                since_fired += len(rows)
                since_fired[fired] = 0
            if history is not None:
                history.append((step, float(fvu.detach()), float((since_fired > dead_after).float().mean())))
            step += 1
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    sae.eval()
    sae.requires_grad_(False)
    sae.train_config = {"expansion": expansion, "k": k, "aux_k": aux_k, "aux_coef": aux_coef,
                        "tokens": tokens, "epochs": epochs, "lr": lr, "batch_size": batch_size,
                        "dead_after": dead_after, "seed": seed, "scale": scale, "steps": total}
    return sae
