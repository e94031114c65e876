"""Quality and interpretability metrics of a sparse autoencoder's latents.

Quality, on evaluation activations ``x_1..x_N`` (rows) and reconstructions ``x̂_i``:

``fvu``             ``Σ_i ‖x_i − x̂_i‖² / Σ_i ‖x_i − x̄‖²``: fraction of variance
                    unexplained, the variance taken about the mean ``x̄``.
``cosine``          mean over i of ``cos(x_i, x̂_i)``, over the activations with
                    ``x_i ≠ 0`` (a ReLU layer's zero vectors have no direction).
``l0``              mean number of non-zero latents per activation.
``frequency``       per latent, the share of activations on which it is non-zero.
``dead_frac``       share of latents never non-zero on the evaluation activations.
``dense_frac``      share of latents non-zero on more than 10 % of them.
``loss_recovered``  ``(L_ablated − L_sae) / (L_ablated − L_clean)``: the model's loss
                    with the layer's output replaced by its reconstruction
                    (``L_sae``), by zero or by its mean over the evaluation
                    activations (``L_ablated``, one variable each:
                    ``loss_recovered_zero``, ``loss_recovered_mean``).  1: the
                    reconstruction loses nothing; 0: no better than ablation.
``kl``              mean over predictions (tokens, or samples of a classifier) of
                    ``KL(p_clean ‖ p_sae)`` of the output distributions.

Interpretability without a language model (token models; positions ``p`` of
sequences, each with its token ``t_p`` and the previous token ``t_{p−1}``):

``token_entropy``   entropy (bits) of the tokens at a latent's ``top_n`` largest
                    activations: low for a token detector, high for an abstract
                    latent (Heap et al. 2025).
``interp_auroc``    an LLM-free detection score, defined in the README
                    ("SAE interpretability proxy") and by :func:`explanations`
                    and :func:`detection_auroc`: an explanation (tokens and
                    bigrams most enriched where the latent fires, from the
                    training split) predicts where it fires on held-out
                    positions; the score is the AUROC of that prediction.

For images, ``label_entropy`` is the entropy (bits) of the labels of the
``top_n`` images on which a latent is largest (a latent's value on an image is
its mean over the image's positions, as for units; see
:func:`landscape.models.units_of`).
"""

from __future__ import annotations

import numpy as np
import torch

FEATURE_NAMES = ("token", "bigram")
N_TOKENS = 256  # byte vocabulary; a position with no predecessor has previous token N_TOKENS
N_FEATURES = N_TOKENS + (N_TOKENS + 1) * N_TOKENS


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """``Σ‖x − x̂‖² / Σ‖x − x̄‖²`` over the rows (variance about the mean)."""
    x, x_hat = x.double(), x_hat.double()
    return float((x - x_hat).pow(2).sum() / (x - x.mean(dim=0)).pow(2).sum())


class ReconstructionStats:
    """Accumulates the quality metrics over batches of activations (module docstring)."""

    def __init__(self, n_latents: int, d: int):
        self.n = 0
        self.err = 0.0
        self.sum = torch.zeros(d, dtype=torch.float64)
        self.sq = 0.0
        self.cos = 0.0
        self.n_nonzero = 0
        self.l0 = 0
        self.counts = torch.zeros(n_latents, dtype=torch.float64)

    def update(self, x: torch.Tensor, x_hat: torch.Tensor, vals: torch.Tensor,
               idx: torch.Tensor) -> None:
        x, x_hat = x.double().cpu(), x_hat.double().cpu()
        self.n += x.shape[0]
        self.err += float((x - x_hat).pow(2).sum())
        self.sum += x.sum(dim=0)
        self.sq += float(x.pow(2).sum())
        nonzero = x.abs().sum(dim=1) > 0
        self.n_nonzero += int(nonzero.sum())
        self.cos += float(torch.nn.functional.cosine_similarity(x[nonzero], x_hat[nonzero], dim=1,
                                                                 eps=1e-12).sum())
        active = (vals > 0).cpu()
        self.l0 += int(active.sum())
        self.counts.index_add_(0, idx.cpu()[active], torch.ones(int(active.sum()), dtype=torch.float64))

    def result(self) -> dict:
        variance = self.sq - float(self.sum.pow(2).sum()) / self.n
        freq = (self.counts / self.n).numpy()
        return {"fvu": self.err / variance if variance > 0 else np.nan,
                "cosine": self.cos / self.n_nonzero if self.n_nonzero else np.nan,
                "l0": self.l0 / self.n, "frequency": freq,
                "dead_frac": float(np.mean(freq == 0)), "dense_frac": float(np.mean(freq > 0.1))}


def loss_recovered(l_clean: float, l_sae: float, l_ablated: float) -> float:
    """``(L_ablated − L_sae) / (L_ablated − L_clean)``; NaN when ablation costs nothing."""
    gap = l_ablated - l_clean
    return (l_ablated - l_sae) / gap if abs(gap) > 1e-12 else float("nan")


# ----------------------------------------------------------------------------- entropy

def entropy_bits(values: np.ndarray) -> float:
    """Entropy (bits) of the empirical distribution of ``values``."""
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def top_entropy(act: np.ndarray, labels: np.ndarray, top_n: int) -> np.ndarray:
    """Per column of ``act (N, M)``: entropy (bits) of ``labels`` at its ``top_n``
    largest entries among the positive ones (NaN for a latent that never fires)."""
    out = np.full(act.shape[1], np.nan)
    order = np.argsort(-act, axis=0, kind="stable")[:top_n]
    for j in range(act.shape[1]):
        rows = order[:, j]
        rows = rows[act[rows, j] > 0]
        if rows.size:
            out[j] = entropy_bits(labels[rows])
    return out


# ----------------------------------------------------------------------------- interpretability proxy

def token_features(tokens: np.ndarray, previous: np.ndarray,
                   vocab: int = N_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """The two features of each position: its token ``t`` (id ``t``) and its bigram
    ``(t_prev, t)`` (id ``V + t_prev · V + t``; ``t_prev = V`` at a sequence start), ``V``
    the vocabulary's size (256 bytes; minilm's 30 522 WordPiece tokens)."""
    tokens = tokens.astype(np.int64)
    return tokens, vocab + previous.astype(np.int64) * vocab + tokens


def _active_pairs(vals: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position, latent, value) of every non-zero latent activation."""
    pos, slot = np.nonzero(vals > 0)
    return pos, idx[pos, slot], vals[pos, slot]


def explanations(vals: np.ndarray, idx: np.ndarray, tokens: np.ndarray, previous: np.ndarray,
                 n_latents: int, size: int = 5, min_count: int = 2,
                 smoothing: float = 0.5, vocab: int = N_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """Each latent's explanation from the training split.

    ``vals, idx (N, k)``: the SAE's top-k latents at ``N`` positions.  For latent
    ``j`` firing at ``n_j`` positions, feature ``f`` (token or bigram) seen
    ``a_jf`` times among them and ``c_f`` times among all ``N`` positions, the
    enrichment is ``log((a_jf + s) / (n_j + s)) − log((c_f + s) / (N + s))``
    (``s`` = ``smoothing``).  The explanation is the ``size`` features of highest
    enrichment among those with ``a_jf ≥ min_count`` and positive enrichment;
    equal enrichments (to 1e-9) are ordered by ``a_jf``, larger first.

    Returns ``features (M, size)`` (−1 where fewer qualify) and their
    ``enrichment (M, size)``."""
    unigram, bigram = token_features(tokens, previous, vocab)
    n_features = vocab + (vocab + 1) * vocab
    seen, seen_counts = np.unique(np.concatenate([unigram, bigram]), return_counts=True)
    pos, lat, _ = _active_pairs(vals, idx)
    n_active = np.bincount(lat, minlength=n_latents)
    keys = np.concatenate([lat * n_features + unigram[pos], lat * n_features + bigram[pos]])
    keys, a = np.unique(keys, return_counts=True)
    keep = a >= min_count
    keys, a = keys[keep], a[keep]
    j, f = keys // n_features, keys % n_features
    counts_f = seen_counts[np.searchsorted(seen, f)]
    n = len(tokens)
    score = (np.log((a + smoothing) / (n_active[j] + smoothing))
             - np.log((counts_f + smoothing) / (n + smoothing)))
    keep = score > 0
    j, f, a, score = j[keep], f[keep], a[keep], score[keep]
    # By latent, then best first; equal enrichment (a feature seen only where the
    # latent fires scores log((N + s)/(n_j + s)) whatever its count) goes to the
    # more frequent feature, then the lower id.
    order = np.lexsort((f, -a, -np.round(score, 9), j))
    j, f, score = j[order], f[order], score[order]
    start = np.searchsorted(j, np.arange(n_latents))
    rank = np.arange(len(j)) - start[j]
    keep = rank < size
    features = np.full((n_latents, size), -1, dtype=np.int64)
    enrich = np.full((n_latents, size), np.nan)
    features[j[keep], rank[keep]] = f[keep]
    enrich[j[keep], rank[keep]] = score[keep]
    return features, enrich


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count
    one half: the Mann-Whitney statistic)."""
    from scipy.stats import rankdata

    labels = labels.astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def detection_auroc(vals: np.ndarray, idx: np.ndarray, tokens: np.ndarray, previous: np.ndarray,
                    features: np.ndarray, enrichment: np.ndarray, *, bins: int = 5,
                    per_bin: int = 20, min_active: int = 5, seed: int = 0,
                    vocab: int = N_TOKENS) -> np.ndarray:
    """Each latent's ``interp_auroc`` on held-out positions.

    For latent ``j``: its activating positions (value > 0) are cut into ``bins``
    activation quantiles and up to ``per_bin`` are drawn from each; as many
    non-activating positions are drawn uniformly.  A position's score is the
    largest enrichment of the explanation's features present there (its token
    or its bigram), 0 if none is; the AUROC of the scores for activating vs
    non-activating positions is the latent's ``interp_auroc``.  NaN for latents
    with fewer than ``min_active`` activating positions here, or no explanation.
    Seeded by ``seed``, so the same inputs give the same value."""
    n_latents = features.shape[0]
    unigram, bigram = token_features(tokens, previous, vocab)
    pos, lat, value = _active_pairs(vals, idx)
    order = np.argsort(lat, kind="stable")
    pos, lat, value = pos[order], lat[order], value[order]
    start = np.searchsorted(lat, np.arange(n_latents + 1))
    rng = np.random.default_rng(seed)
    n = len(tokens)
    out = np.full(n_latents, np.nan)
    for j in range(n_latents):
        expl = features[j] >= 0
        positions, values = pos[start[j]:start[j + 1]], value[start[j]:start[j + 1]]
        if positions.size < min_active or not expl.any() or positions.size >= n:
            continue
        edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
        which = np.searchsorted(edges, values, side="right")
        chosen = []
        for b in range(bins):
            members = positions[which == b]
            if members.size:
                chosen.append(rng.choice(members, size=min(per_bin, members.size), replace=False))
        active = np.concatenate(chosen)
        inactive_mask = np.ones(n, dtype=bool)
        inactive_mask[positions] = False
        pool = np.nonzero(inactive_mask)[0]
        inactive = rng.choice(pool, size=min(len(active), len(pool)), replace=False)
        sample = np.concatenate([active, inactive])
        lookup = dict(zip(features[j][expl].tolist(), enrichment[j][expl].tolist()))
        score = np.array([max(lookup.get(int(u), 0.0), lookup.get(int(b_), 0.0))
                          for u, b_ in zip(unigram[sample], bigram[sample])])
        label = np.concatenate([np.ones(len(active)), np.zeros(len(inactive))])
        out[j] = auroc(score, label)
    return out


def top_positions(vals: np.ndarray, idx: np.ndarray, n_latents: int,
                  top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per latent, the positions of its ``top_n`` largest activations (−1 padded)
    and those activations (NaN padded), ``(M, top_n)`` each, largest first."""
    pos, lat, value = _active_pairs(vals, idx)
    order = np.lexsort((pos, -value, lat))
    pos, lat, value = pos[order], lat[order], value[order]
    start = np.searchsorted(lat, np.arange(n_latents))
    rank = np.arange(len(lat)) - start[lat]
    keep = rank < top_n
    where = np.full((n_latents, top_n), -1, dtype=np.int64)
    act = np.full((n_latents, top_n), np.nan, dtype=np.float32)
    where[lat[keep], rank[keep]] = pos[keep]
    act[lat[keep], rank[keep]] = value[keep]
    return where, act
