"""What the LLM-free detection scores can and cannot credit, on planted latents.

The latents are planted on the standard library's own Python sources (the
``pysource`` corpus, offline): their true feature is known by construction, so
each score's verdict on them is ground truth, not the code against itself.
"""

import re

import numpy as np
import pytest
import torch

from landscape.data import text_stream
from landscape.sae.metrics import (
    CONTEXT_BASE,
    N_TOKENS,
    context_features,
    detection_auroc,
    explanations,
)

NAMES = ("token e", "bigram de", "inside string", "inside comment", "after def", "random")
SEQ_LEN = 128


def _planted_masks(tokens: np.ndarray, rng) -> list[np.ndarray]:
    """Where each planted latent fires: the byte ``e``; the bigram ``de``; inside a
    quoted string on its line; inside a ``#`` comment; the first letter of a name
    after ``def ``; and 10 % of positions at random."""
    text = bytes(tokens.astype(np.uint8))
    inside_string = np.zeros(len(text), bool)
    inside_comment = np.zeros(len(text), bool)
    quote, comment = None, False
    for i, byte in enumerate(text):
        ch = chr(byte)
        if ch == "\n":
            quote, comment = None, False
        elif comment:
            inside_comment[i] = True
        elif quote is None:
            if ch in "'\"":
                quote = ch
            elif ch == "#":
                comment = inside_comment[i] = True
        elif ch == quote and text[i - 1:i] != b"\\":
            quote = None
        else:
            inside_string[i] = True
    after_def = np.zeros(len(text), bool)
    for match in re.finditer(rb"def ([A-Za-z_])", text):
        after_def[match.start(1)] = True
    previous = np.concatenate([[N_TOKENS], tokens[:-1]])
    return [tokens == ord("e"), (previous == ord("d")) & (tokens == ord("e")), inside_string,
            inside_comment, after_def, rng.random(len(tokens)) < 0.1]


def _split(name: str, n_bytes: int, rng):
    stream = text_stream("pysource", name)[:n_bytes].astype(np.int64)
    seqs = stream[: len(stream) // SEQ_LEN * SEQ_LEN].reshape(-1, SEQ_LEN)
    tokens = seqs.reshape(-1)
    previous = np.concatenate([np.full((len(seqs), 1), N_TOKENS), seqs[:, :-1]], 1).reshape(-1)
    acts = np.stack([np.where(m, 1 + rng.random(len(tokens)), 0.0)
                     for m in _planted_masks(tokens, rng)], 1)
    idx = np.argsort(-acts, 1, kind="stable")
    return seqs, tokens, previous, np.take_along_axis(acts, idx, 1), idx


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    return _split("train", 120_000, rng), _split("test", 120_000, rng)


def _scores(planted, lookback: int, seed: int) -> dict:
    train, test = planted
    ctx_train = context_features(train[0], lookback) if lookback else None
    ctx_test = context_features(test[0], lookback) if lookback else None
    feats, enrich = explanations(train[3], train[4], train[1], train[2], len(NAMES), context=ctx_train)
    auc = detection_auroc(test[3], test[4], test[1], test[2], feats, enrich, seed=seed,
                          context=ctx_test)
    return dict(zip(NAMES, auc)), feats


def test_context_features_are_the_distinct_recent_tokens_of_the_same_sequence():
    seqs = np.array([[1, 2, 1, 3], [4, 4, 4, 5]])
    got = context_features(seqs, 2)
    want = [set(), {1}, {1, 2}, {1, 2},  # position 3 sees 2 and 1 (not the first 1)
            set(), {4}, {4}, {4}]        # repeats count once; no reach into the other sequence
    for row, expected in zip(got, want):
        assert {int(v) - CONTEXT_BASE for v in row if v >= 0} == expected
        assert len([v for v in row if v >= 0]) == len(expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_token_scores_credit_tokens_and_bigrams_and_are_blind_to_context(planted, seed):
    score, feats = _scores(planted, 0, seed)
    assert feats[0, 0] == ord("e")
    assert feats[1, 0] == N_TOKENS + ord("d") * N_TOKENS + ord("e")
    assert score["token e"] == pytest.approx(1.0, abs=1e-3)
    assert score["bigram de"] == pytest.approx(1.0, abs=2e-3)
    assert score["random"] == pytest.approx(0.5, abs=0.03)
    # A latent decided by the context, not the token, reads as random.
    assert score["inside string"] < 0.56
    assert score["inside comment"] < 0.56
    assert 0.7 < score["after def"] < 0.85  # a space before a letter: half of the story


@pytest.mark.parametrize("seed", [0, 1])
def test_context_scores_credit_what_recent_tokens_decide(planted, seed):
    score, feats = _scores(planted, 32, seed)
    assert score["token e"] == pytest.approx(1.0, abs=1e-3)
    assert score["bigram de"] == pytest.approx(1.0, abs=2e-3)
    assert score["inside comment"] > 0.8
    assert score["after def"] > 0.85
    assert score["inside string"] > 0.65
    assert score["random"] == pytest.approx(0.5, abs=0.08)
    # The comment latent's best context feature is the '#' that opens it.
    assert feats[3, 5] == CONTEXT_BASE + ord("#")


def test_sae_metrics_record_both_scores_and_the_lookback():
    from landscape.models.transformer import build_transformer
    from landscape.sae import TopKSAE, sae_metrics

    torch.manual_seed(0)
    model = build_transformer(256, width=16, depth=1, heads=2, context=16)
    stream = torch.as_tensor(text_stream("pysource", "train")[:4_000].astype(np.int64))
    x = stream[: 4_000 // 16 * 16].reshape(-1, 16)
    sae = TopKSAE(16, 32, k=4, seed=0)
    ds = sae_metrics(model, sae, x[:100], None, "blocks.0", train_x=x[100:], interp_lookback=64)
    assert "interp_auroc_context" in ds
    assert ds.interp_auroc_context.attrs["lookback"] == 15  # capped at the sequence length − 1
    assert '"interp_lookback": 64' in ds.attrs["config"]
