"""Q7 at real scale (experiments/q7_minilm.py): its measures against values known by
construction, its activation cache against the library's capture, its --quick run's
embedding baseline against a closed form, and bench/minilm_bench.py --smoke."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import landscape
from landscape.sae import layer_vectors

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    return module


q7m = _load(ROOT / "experiments" / "q7_minilm.py", "q7_minilm")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("q7m")
    summary = q7m.main(["--quick", "--out", str(out / "results"), "--figures", str(out / "fig")])
    return summary, out


def test_token_r2_known_values_at_wordpiece_ids():
    gen = torch.Generator().manual_seed(0)
    k, n_each = 10, 2000
    ids = torch.tensor([101, 102, 1996, 2003, 4000, 7592, 12000, 20000, 29000, 30521])
    tokens = ids.repeat(n_each)  # WordPiece ids far above a byte's 256
    table = torch.eye(k)[torch.arange(k).repeat(n_each)]  # each token its own one-hot vector
    assert q7m.token_r2(table, tokens) == pytest.approx(1.0, abs=1e-12)
    noise = torch.randn(len(tokens), k, generator=gen)
    assert abs(q7m.token_r2(noise, tokens)) < 0.01  # adjusted: expectation 0
    s = math.sqrt((1 - 1 / k) / k)  # noise carrying as much variance as the token code
    assert q7m.token_r2(table + s * noise, tokens) == pytest.approx(0.5, abs=0.01)


def test_special_latents_and_reading():
    top = np.array([[0, 63, 5, -1],     # 2 of 3 at [CLS]/[SEP]: special
                    [0, 5, 6, 7],       # 1 of 4: not
                    [63, 63, 1, 2],     # 2 of 4: special (at least half)
                    [-1, -1, -1, -1]])  # never fires: not
    assert q7m.special_latents(top, 64).tolist() == [True, False, True, False]
    assert q7m.special_latents(top, 65).tolist() == [False, False, False, False]
    lower = q7m.tost([0.70, 0.71, 0.69], [0.60, 0.61, 0.59], 0.02)
    assert q7m.reading(lower, +1) == "less interpretable"
    assert q7m.reading(lower, -1) == "as interpretable"  # lower entropy is better
    same = q7m.tost([0.700, 0.701, 0.699], [0.701, 0.700, 0.699], 0.02)
    assert q7m.reading(same, +1) == "as interpretable"
    vague = q7m.tost([0.5, 0.9, 0.7], [0.6, 0.4, 0.8], 0.02)
    assert q7m.reading(vague, +1) == "inconclusive"
    ci = q7m.interval([1.0, 2.0, 3.0])  # mean 2, std 1, t(0.975, 2) = 4.3027
    assert ci["mean"] == 2 and ci["hi"] - 2 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)


def test_cache_equals_the_forward_stopping_capture():
    model = landscape.build_model("minilm", context=16)
    x, _ = landscape.load_dataset("english", n=3, seed=2, in_shape=model.in_shape,
                                  tokenizer=model.tokenizer)
    cache = q7m.cache_activations(model, x, ("1", "3", "6"), batch_size=2)
    for layer, module in (("1", "layers.0"), ("3", "layers.2"), ("6", "layers.5")):
        ref, per_input = layer_vectors(model, module, x)
        assert per_input == 16 and cache[layer].shape == ref.shape
        assert (cache[layer] - ref).abs().max() <= 1e-5


def test_quick_run(quick):
    summary, out = quick
    cfg = q7m.SIZES["quick"]
    assert (out / "results" / "criteria.txt").read_text() == q7m.CRITERIA
    rows = summary["rows"]
    assert len(rows) == len(cfg["variants"]) * len(cfg["layers"]) * cfg["seeds"]
    assert all(r["l0"] <= cfg["k"] + 1e-9 for r in rows)
    for name in ("q7_minilm_metrics.png", "q7_minilm_mechanism.png"):
        assert (out / "fig" / name).stat().st_size > 0
    # Mean-ablating the last layer makes every position the evaluation mean mu, so the
    # spliced sentence embedding is mu / |mu| whatever the input: the baseline is the
    # mean cosine of mu with the clean embeddings.
    model = landscape.build_model("minilm", context=cfg["context"])
    x, _ = landscape.load_dataset("english", n=cfg["eval_windows"], split="test", seed=0,
                                  in_shape=model.in_shape, tokenizer=model.tokenizer)
    with torch.no_grad():
        last = model.hidden_states(x)[-1]
        mu = last.reshape(-1, last.shape[-1]).double().mean(0)
        expected = torch.cosine_similarity(model(x).double(), mu[None], dim=-1).mean()
    got = [r["embedding_recovered_mean_ablated"] for r in rows
           if r["variant"] == "trained" and r["layer"] == "6"]
    assert got == pytest.approx([float(expected)] * cfg["seeds"], abs=1e-4)


def test_bench_smoke(capsys):
    bench = _load(ROOT / "bench" / "minilm_bench.py", "minilm_bench")
    result = bench.main(["--smoke"])
    rows = {what.split(" (")[0]: (n, w, c) for what, n, w, c in result["rows"]}
    # 4 windows of 16 WordPiece tokens: 64 tokens per pass, 64 SAE training tokens per epoch
    assert [n for n, _, _ in rows.values()] == [64, 64, 64, 64]
    assert result["vectors"] == 64 and result["sets"] == {1: (64, 384), 3: (64, 384), 6: (64, 384)}
    assert all(w > 0 and c >= 0 for _, w, c in rows.values())
    assert "| SAE training (384 latents" in capsys.readouterr().out
