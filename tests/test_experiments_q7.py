"""Q7 (SAEs on random and trained networks): the script's own measures against
values known by construction, and its --quick run against what its constructions
guarantee (a transformer fed noise instead of tokens has no token identity)."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        spec = importlib.util.spec_from_file_location("q7", ROOT / "experiments" /
                                                      "q7_sae_random_vs_trained.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    return module


q7 = _load()


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("q7")
    try:
        summary = q7.main(["--quick", "--out", str(out / "results"), "--figures", str(out / "fig")])
    finally:
        torch.set_num_threads(threads)
    return summary, out


# ----------------------------------------------------------------------------- measures

def test_token_r2_known_values():
    gen = torch.Generator().manual_seed(0)
    k, n_each = 10, 2000
    tokens = torch.arange(k).repeat(n_each)
    table = torch.eye(k)  # token t -> e_t: between-token variance 1 - 1/K per vector
    assert q7.token_r2(table[tokens], tokens) == pytest.approx(1.0, abs=1e-12)
    noise = torch.randn(len(tokens), k, generator=gen)
    assert abs(q7.token_r2(noise, tokens)) < 0.01  # adjusted: expectation 0, not (K-1)/(N-1)
    # e_t + N(0, s^2 I) with d s^2 = 1 - 1/K: half the variance is the token's.
    s = math.sqrt((1 - 1 / k) / k)
    assert q7.token_r2(table[tokens] + s * noise, tokens) == pytest.approx(0.5, abs=0.01)
    # Only the tokens present count: ids 200.. unused change nothing.
    assert q7.token_r2(noise, tokens + 200) == pytest.approx(q7.token_r2(noise, tokens), abs=1e-12)
    # Many tokens, few positions each: the raw share would read (K - 1)/(N - 1) = 0.0996.
    many = torch.arange(200).repeat(10)
    values = [q7.token_r2(torch.randn(2000, 8, generator=gen), many) for _ in range(20)]
    assert abs(np.mean(values)) < 0.01 and max(map(abs, values)) < 0.04


def test_null_entropy_and_effect_sizes():
    assert q7.null_entropy(np.zeros(100)) == 0
    assert q7.null_entropy(np.arange(1000)) == pytest.approx(5.0)  # 32 distinct: log2 32
    assert q7.cohens_d([0, 1, 2], [3, 4, 5]) == pytest.approx(3.0)  # pooled std 1
    assert q7.cohens_d([3, 4, 5], [0, 1, 2]) == pytest.approx(-3.0)
    assert q7.cohens_d([1, 1], [1, 1]) == 0 and q7.cohens_d([1, 1], [2, 2]) == math.inf
    assert q7.auroc([0, 1, 2], [3, 4, 5]) == 1 and q7.auroc([3, 4, 5], [0, 1, 2]) == 0
    assert q7.auroc([1, 2], [1, 2]) == 0.5
    e = q7.effect([0, 1, 2, 1, 0], [5, 6, 7, 6, 5])
    assert e["diff"] == pytest.approx(5.0) and e["auroc"] == 1
    assert e["d_lo"] > 0 and e["d_lo"] <= e["d"] <= e["d_hi"]
    same = q7.effect([0, 1, 2, 1, 0], [1, 0, 2, 0, 1])
    assert same["d_lo"] < 0 < same["d_hi"] and same["auroc"] == 0.5
    found = q7.separating({"x/l": {"m": e, "n": same}})
    assert found == {"m": ["x/l"]}


def test_context_widening_against_hand_values():
    def row(variant, seed, token, context, layer="b0"):
        return {"part": "variants", "variant": variant, "layer": layer, "seed": seed,
                "interp_auroc": token, "interp_auroc_context": context}

    # Trained gains 0.10 from context in every seed, init 0.01: widening 0.09 each seed.
    rows = [row("trained", s, 0.70 + 0.01 * s, 0.80 + 0.01 * s) for s in range(3)]
    rows += [row("init", s, 0.60 - 0.02 * s, 0.61 - 0.02 * s) for s in range(3)]
    # Control: widening 0.000, 0.005, -0.005 (mean 0, interval below the margin).
    rows += [row("control", s, 0.65, 0.75 + d) for s, d in enumerate((0.0, -0.005, 0.005))]
    # Rerandomised: widening 0.00, 0.04, 0.08 (mean 0.04 above the margin, interval from
    # 0.04 - t(0.975, 2) * 0.04 / sqrt 3 < 0).
    rows += [row("rerandomised", s, 0.60, 0.70 - w) for s, w in enumerate((0.0, 0.04, 0.08))]
    out = q7.context_widening(rows, margin=0.02)
    assert out["init/b0"]["mean"] == pytest.approx(0.09) and out["init/b0"]["verdict"] == "held"
    assert out["init/b0"]["lo"] == pytest.approx(0.09) and out["init/b0"]["n"] == 3
    assert out["control/b0"]["mean"] == pytest.approx(0.0, abs=1e-12)
    half = 4.302652729911275 * 0.005 / math.sqrt(3)
    assert out["control/b0"]["hi"] == pytest.approx(half)
    assert out["control/b0"]["verdict"] == "not held"
    assert out["rerandomised/b0"]["mean"] == pytest.approx(0.04)
    assert out["rerandomised/b0"]["lo"] == pytest.approx(0.04 - 4.302652729911275 * 0.04 / math.sqrt(3))
    assert out["rerandomised/b0"]["verdict"] == "undecided"
    assert set(out) == {"init/b0", "control/b0", "rerandomised/b0"}


def test_noise_embedding_carries_no_token():
    table = 0.3 + 2.0 * torch.randn(256, 8, generator=torch.Generator().manual_seed(1))
    a = q7.NoiseEmbedding(table, seed=5)(torch.zeros(400, 50, dtype=torch.long))
    b = q7.NoiseEmbedding(table, seed=5)(torch.randint(0, 256, (400, 50)))
    torch.testing.assert_close(a, b)  # the tokens do not enter
    assert float(a.mean()) == pytest.approx(float(table.double().mean()), abs=0.01)
    assert float(a.std()) == pytest.approx(float(table.double().std()), rel=0.01)
    tokens = torch.randint(0, 256, (400 * 50,), generator=torch.Generator().manual_seed(2))
    assert abs(q7.token_r2(a.reshape(-1, 8), tokens)) < 0.01


def test_variants_rebuild_the_recipe_with_each_weight_seed():
    import landscape

    tf = dict(width=16, depth=1, heads=2, context=8)
    trained = landscape.build_model("transformer", seed=0, **tf)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    for seed in (0, 3):
        own = landscape.build_model("transformer", seed=seed, **tf).state_dict()
        rebuilt = q7.variant(trained, "init", seed).state_dict()
        for key in own:
            torch.testing.assert_close(rebuilt[key], own[key], rtol=0, atol=0)
    xavier = q7.variant(trained, "init:xavier:1", 2)
    biases = torch.cat([m.bias.detach() for m in xavier.modules()
                        if isinstance(m, torch.nn.Linear) and m.bias is not None])
    assert float(biases.std()) == pytest.approx(1.0, abs=0.1)  # bias scale 1
    noisy = q7.variant(trained, "noise-input", 0)
    assert isinstance(noisy.embed, q7.NoiseEmbedding) and not isinstance(trained.embed,
                                                                        q7.NoiseEmbedding)


# ----------------------------------------------------------------------------- the quick run

def test_quick_run_against_constructions(quick):
    import landscape
    from landscape.data import unigram_bits

    summary, out = quick
    cfg = q7.SIZES["quick"]
    info = summary["transformer"]
    # Bits per byte: the held-out loss in nats over ln 2; the unigram baseline of the
    # same windows.
    tf = cfg["tf"]
    x, _ = landscape.load_dataset("pysource", n=cfg["train_windows"], split="train", seed=0,
                                  in_shape=(tf["context"],))
    xt, _ = landscape.load_dataset("pysource", n=cfg["test_windows"], split="test", seed=0,
                                   in_shape=(tf["context"],))
    assert info["unigram_bits_per_byte"] == pytest.approx(unigram_bits(x, xt), rel=1e-12)
    assert info["below_unigram"] == pytest.approx(
        1 - info["test_bits_per_byte"] / info["unigram_bits_per_byte"])
    variants = summary["variants"]
    layers = [f"blocks.{i}" for i in range(tf["depth"])]
    for layer in layers:
        for name in q7.VARIANTS:
            assert variants[f"{name}/{layer}"]["fvu"]["n"] == cfg["seeds"]
        noise = variants[f"noise-input/{layer}"]
        # No token identity by construction: adjusted token R^2 ~ 0, detection at chance.
        assert abs(noise["token_r2"]["mean"]) < 0.05, noise["token_r2"]
        assert noise["interp_auroc"]["mean"] == pytest.approx(0.5, abs=0.06)
        assert noise["interp_auroc_context"]["mean"] == pytest.approx(0.5, abs=0.06)
        # ... and the tokens at a latent's top activations are as mixed as at random positions.
        assert noise["token_entropy"]["mean"] == pytest.approx(info["null_token_entropy"], abs=0.4)
        for name in ("trained", "init", "control"):
            assert variants[f"{name}/{layer}"]["token_r2"]["mean"] > 0.2
    # Every seed trains its own network on the same SAE data: the trained token R^2
    # differs between seeds, and network s is the one recorded for seed s.
    assert variants["trained/blocks.0"]["token_r2"]["std"] > 0
    assert len({n["test_bits_per_byte"] for n in info["networks"]}) == cfg["seeds"]
    assert len(summary["image_info"]["cnn"]["test_accuracy"]) == cfg["seeds"]
    # Equivalence: every random condition and metric tested at its margin.
    for key, r in summary["equivalence"].items():
        assert r["margin"] == q7.MARGINS[key.rsplit("/", 1)[1]]
        assert r["verdict"] in ("equivalent", "different", "not detected", "untested"), key
    assert set(summary["inits"]) == {f"init:{s}" for s in cfg["inits"]}
    assert set(summary["context_widening"]) == {f"{n}/{layer}" for n in q7.VARIANTS[1:]
                                                for layer in layers}
    images = summary["images"]
    for name in ("trained", "init"):
        assert images[f"cnn/{name}"]["epochs"]["mean"] == cfg["image_sae_epochs"]
        assert images[f"cnn/{name}"]["fvu"]["n"] == cfg["seeds"]
    assert summary["image_info"]["null_label_entropy"] == pytest.approx(3.1, abs=0.15)
    for path in summary["figures"]:
        assert Path(path).read_bytes()[:4] == b"\x89PNG"
    assert (out / "results" / "summary.json").is_file()
    # One torch thread from start to end: `landscape train` inside the run must not
    # widen the pool for the analyses after it.
    assert summary["threads"] == 1
