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
                    NaN when ablation's loss change is within 2 standard errors
                    of zero (noise; the variable's ``reason`` attribute says so).
``kl``              mean over predictions (tokens, or samples of a classifier) of
                    ``KL(p_clean ‖ p_sae)`` of the output distributions.

Interpretability without a language model (token models; positions ``p`` of
sequences, each with its token ``t_p`` and the previous token ``t_{p−1}``):

``token_entropy``   entropy (bits) of the tokens at a latent's ``top_n`` largest
                    activations: low for a token detector, high for an abstract
                    latent (Heap et al. 2025).
``interp_auroc``    an LLM-free detection score (:func:`explanations`,
                    :func:`detection_auroc`): an explanation (tokens and
                    bigrams most enriched where the latent fires, from the
                    training split) predicts where it fires on held-out
                    positions; the score is the AUROC of that prediction
                    (defined below).
``interp_auroc_context``  the same with a third family of features: "token ``t``
                    occurred among the ``lookback`` positions before this one, in
                    the same sequence" (:func:`context_features`).

The detection score, a language-model-free stand-in for the detection scoring of
automated interpretability.  The *features* of a position are its token ``t`` and
its bigram ``(t_prev, t)`` (``t_prev`` a start marker at position 0).
*Explanation*, from the training inputs: latent ``j`` fires (``z_j > 0``) at ``n_j``
of the ``N`` positions; feature ``f`` occurs ``a_jf`` times among them and ``c_f``
times in all; its enrichment is
``e_jf = log((a_jf + ½)/(n_j + ½)) − log((c_f + ½)/(N + ½))``; the explanation is
the 5 features of largest enrichment with ``a_jf ≥ 2`` and ``e_jf > 0`` (equal
enrichments, to 1e-9, go to the larger ``a_jf``: a feature seen only where the
latent fires scores ``log((N + ½)/(n_j + ½))`` whatever its count, and the token
covers all its bigrams).  *Detection*, on the evaluation inputs: the latent's
activating positions are cut into 5 activation quantiles and up to 20 drawn from
each (so weak activations count as much as strong ones), and as many
non-activating positions are drawn uniformly; a position's score is the largest
enrichment among the explanation's features present there (0 if none);
``interp_auroc`` is the AUROC of these scores for activating against
non-activating (ties count one half).  NaN for a latent with fewer than 5
activating held-out positions.  ``interp_auroc_context`` ranks its context
features by ``a_jf · e_jf`` and gives them 5 slots of their own beside the 5
token/bigram ones.

What the two scores can and cannot credit.  Both are enrichment detectors: an
explanation is a short list of features, and a position scores the largest
enrichment of the listed features it carries.  ``interp_auroc`` therefore credits
exactly the latents whose firing is decided by the current token or the last two
(a token or bigram detector scores 1), and it is blind to context: on 120 000 bytes
of the standard library's own sources (seeds 0–2, 60 000 bytes too), planted
latents that fire inside comments or inside string literals score 0.50–0.54 and
0.50–0.51, and one that fires on the first letter of a name after ``def `` scores
0.76–0.83 (``tests/test_sae_interp.py`` plants them).  Because it reads tokens
only, its correlation with the share of a layer's variance explained by the
current token (``token_r2``) is partly true by construction.
``interp_auroc_context`` (``lookback`` 32) credits what recently seen tokens
decide: the same latents score 0.82–0.87, 0.72–0.85 and 0.88–0.93 (the ``#`` or
the quote among the last 32 bytes is the enriched feature).  Neither credits a
state that no token, bigram or recently seen token marks (nesting depth, which
quote of a line is open), and a latent that fires at random scores 0.5 ± 0.05.

For images, ``label_entropy`` is the entropy (bits) of the labels of the
``top_n`` images on which a latent is largest (a latent's value on an image is
its mean over the image's positions, as for units; see
:func:`landscape.models.units_of`).
"""

from __future__ import annotations

import numpy as np
import torch

FEATURE_NAMES = ("token", "bigram", "context")
N_TOKENS = 256  # byte vocabulary; a position with no predecessor has previous token N_TOKENS
N_FEATURES = N_TOKENS + (N_TOKENS + 1) * N_TOKENS  # tokens and bigrams
CONTEXT_BASE = N_FEATURES  # context feature "t among the last lookback tokens": id CONTEXT_BASE + t
N_ALL_FEATURES = CONTEXT_BASE + N_TOKENS


def context_base(vocab: int = N_TOKENS) -> int:
    """The first context feature id for a vocabulary of ``vocab`` tokens (tokens and
    bigrams come first)."""
    return vocab + (vocab + 1) * vocab


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


# Ablation's loss change is noise when it is within this many standard errors of zero.
NOISE_SE = 2.0


def loss_recovered(l_clean: float, l_sae: float, l_ablated: float, gap_stderr: float = 0.0) -> float:
    """``(L_ablated − L_sae) / (L_ablated − L_clean)``; NaN when ablation costs nothing,
    or no more than :data:`NOISE_SE` standard errors (``gap_stderr``, of the mean
    per-prediction change) of its loss change: a ratio over noise means nothing."""
    gap = l_ablated - l_clean
    if abs(gap) <= max(1e-12, NOISE_SE * gap_stderr):
        return float("nan")
    return (l_ablated - l_sae) / gap


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


def context_features(sequences: np.ndarray, lookback: int, vocab: int = N_TOKENS) -> np.ndarray:
    """``(B·T, lookback)`` context feature ids of every position of ``sequences (B, T)``:
    ``context_base(vocab) + t`` for each distinct token ``t`` among the ``lookback``
    positions before it in its own sequence, −1 where there are fewer (or for repeats)."""
    seqs = np.asarray(sequences).astype(np.int64)
    b, t = seqs.shape
    base = context_base(vocab)
    out = np.full((b, t, lookback), -1, dtype=np.int64)
    for d in range(1, min(lookback, t - 1) + 1):
        out[:, d:, d - 1] = base + seqs[:, :-d]
    out = np.sort(out.reshape(b * t, lookback), axis=1)
    out[:, 1:][out[:, 1:] == out[:, :-1]] = -1  # each token counts once per position
    return out


def _feature_table(tokens: np.ndarray, previous: np.ndarray, context: np.ndarray | None,
                   vocab: int = N_TOKENS) -> np.ndarray:
    """``(N, F)`` feature ids of every position (−1 for none): token, bigram, context."""
    unigram, bigram = token_features(tokens, previous, vocab)
    cols = [unigram[:, None], bigram[:, None]]
    if context is not None:
        cols.append(np.asarray(context, dtype=np.int64))
    return np.concatenate(cols, axis=1)


def _active_pairs(vals: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position, latent, value) of every non-zero latent activation."""
    pos, slot = np.nonzero(vals > 0)
    return pos, idx[pos, slot], vals[pos, slot]


def explanations(vals: np.ndarray, idx: np.ndarray, tokens: np.ndarray, previous: np.ndarray,
                 n_latents: int, size: int = 5, min_count: int = 2,
                 smoothing: float = 0.5, context: np.ndarray | None = None,
                 vocab: int = N_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """Each latent's explanation from the training split.

    ``vals, idx (N, k)``: the SAE's top-k latents at ``N`` positions.  For latent
    ``j`` firing at ``n_j`` positions, feature ``f`` (token or bigram) seen
    ``a_jf`` times among them and ``c_f`` times among all ``N`` positions, the
    enrichment is ``log((a_jf + s) / (n_j + s)) − log((c_f + s) / (N + s))``
    (``s`` = ``smoothing``).  The explanation is the ``size`` features of highest
    enrichment among those with ``a_jf ≥ min_count`` and positive enrichment;
    equal enrichments (to 1e-9) are ordered by ``a_jf``, larger first.

    ``context``, when given, adds the context features of every position
    (:func:`context_features`) as a family of their own: the explanation is then
    the best ``size`` token or bigram features followed by the best ``size``
    context features, ``2 · size`` in all.  Ranked together, rare tokens and
    bigrams seen only where the latent fires (the largest enrichment there is)
    would crowd out a context feature that marks most of its positions.

    Returns ``features (M, size)`` (``(M, 2 · size)`` with ``context``; −1 where
    fewer qualify) and their ``enrichment``."""
    table = _feature_table(tokens, previous, context, vocab)
    n_all = context_base(vocab) + vocab
    seen, seen_counts = np.unique(table[table >= 0], return_counts=True)
    pos, lat, _ = _active_pairs(vals, idx)
    n_active = np.bincount(lat, minlength=n_latents)
    rows = table[pos]
    keys = (lat[:, None] * n_all + rows)[rows >= 0]
    keys, a = np.unique(keys, return_counts=True)
    keep = a >= min_count
    keys, a = keys[keep], a[keep]
    j, f = keys // n_all, keys % n_all
    counts_f = seen_counts[np.searchsorted(seen, f)]
    n = len(tokens)
    score = (np.log((a + smoothing) / (n_active[j] + smoothing))
             - np.log((counts_f + smoothing) / (n + smoothing)))
    keep = score > 0
    j, f, a, score = j[keep], f[keep], a[keep], score[keep]
    # By latent, then best first; equal enrichment (a feature seen only where the
    # latent fires scores log((N + s)/(n_j + s)) whatever its count) goes to the
    # more frequent feature, then the lower id.
    family = (f >= context_base(vocab)).astype(np.int64)
    # Context features rank by a_jf · enrichment, their share of the KL divergence
    # between where the latent fires and everywhere: a rare token seen a few times
    # before firing positions must not outrank the quote that precedes most of them.
    rank_by = np.where(family == 1, a * score, score)
    order = np.lexsort((f, -a, -np.round(rank_by, 9), family, j))
    j, f, score, family = j[order], f[order], score[order], family[order]
    group = j * 2 + family
    start = np.searchsorted(group, np.arange(2 * n_latents))
    rank = np.arange(len(j)) - start[group]
    keep = rank < size
    slot = family * size + rank
    width = 2 * size if context is not None else size
    features = np.full((n_latents, width), -1, dtype=np.int64)
    enrich = np.full((n_latents, width), np.nan)
    features[j[keep], slot[keep]] = f[keep]
    enrich[j[keep], slot[keep]] = score[keep]
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
                    context: np.ndarray | None = None, vocab: int = N_TOKENS) -> np.ndarray:
    """Each latent's ``interp_auroc`` on held-out positions.

    For latent ``j``: its activating positions (value > 0) are cut into ``bins``
    activation quantiles and up to ``per_bin`` are drawn from each; as many
    non-activating positions are drawn uniformly.  A position's score is the
    largest enrichment of the explanation's features present there (its token
    or its bigram, or with ``context`` its context features), 0 if none is; the
    AUROC of the scores for activating vs non-activating positions is the
    latent's ``interp_auroc``.  NaN for latents with fewer than ``min_active``
    activating positions here, or no explanation.  Seeded by ``seed``, so the
    same inputs give the same value."""
    n_latents = features.shape[0]
    table = _feature_table(tokens, previous, context, vocab)
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
        rows = table[sample]
        match = rows[:, :, None] == features[j][expl][None, None, :]
        score = np.where(match, enrichment[j][expl][None, None, :], 0.0).max(axis=(1, 2))
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
