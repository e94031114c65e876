"""Sparse autoencoders: training against known dictionaries, metrics against
closed forms, the interpretability proxy on latents with a known answer."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from landscape.errors import LandscapeError
from landscape.sae import TopKSAE, fvu, layer_vectors, sae_metrics, train_sae
from landscape.sae.metrics import auroc, detection_auroc, entropy_bits, explanations, top_positions


@pytest.fixture(autouse=True)
def _one_thread():
    # Many small steps: one thread avoids the pool's spin-waits on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sparse_dictionary_data(n=6000, d=16, atoms=24, k=3, seed=0):
    """x = c D: ``k``-sparse non-negative codes over a unit-norm dictionary ``D``."""
    gen = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, d, generator=gen)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    support = torch.rand(n, atoms, generator=gen).argsort(dim=1)[:, :k]
    codes = torch.zeros(n, atoms).scatter(1, support, 0.5 + torch.rand(n, k, generator=gen))
    return codes @ dictionary, dictionary


def exact_sae(d: int) -> TopKSAE:
    """Latents ±e_i with k = d: TopK keeps every non-zero ReLU(±x_i), so x̂ = x exactly."""
    sae = TopKSAE(d, 2 * d, d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def mean_sae(d: int, mean: torch.Tensor) -> TopKSAE:
    """No latent ever fires (zero encoder), and the decoder bias is the mean: x̂ = x̄."""
    sae = TopKSAE(d, 2 * d, 1)
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.zero_()
        sae.b_dec.copy_(mean)
    return sae


def value(ds, name: str) -> float:
    """The one number a single-variant, single-layer result holds for ``name``."""
    return float(ds[name].squeeze())


def assert_recovered(ds, ablation: str, expected: float) -> None:
    """loss_recovered_ABLATION is ``expected`` when ablation's loss change exceeds two
    standard errors of it, else NaN with the reason."""
    name = f"loss_recovered_{ablation}"
    gap = value(ds, f"loss_{ablation}_ablated") - value(ds, "loss_clean")
    if abs(gap) > 2 * value(ds, f"loss_{ablation}_gap_stderr"):
        assert value(ds, name) == pytest.approx(expected, abs=1e-5)
    else:
        assert np.isnan(value(ds, name)) and "noise" in ds[name].attrs["reason"]


# ----------------------------------------------------------------------------- training

def test_dictionary_recovery():
    x, dictionary = sparse_dictionary_data()
    sae = train_sae(x, expansion=3, k=3, epochs=2, batch_size=128, seed=1, lr=3e-2)
    best = (sae.W_dec @ dictionary.T).max(dim=0).values  # each true atom's best latent
    assert (best > 0.9).float().mean() >= 0.9
    with torch.no_grad():
        assert fvu(x, sae(x)) < 0.15


def test_sae_api_shapes_and_unit_decoder():
    x, _ = sparse_dictionary_data(n=512)
    sae = train_sae(x, expansion=2, k=4, epochs=1, batch_size=64)
    assert sae.W_dec.shape == (32, 16)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))
    z = sae.encode(x[:10])
    assert z.shape == (10, 32) and ((z > 0).sum(dim=1) <= 4).all()
    torch.testing.assert_close(sae.decode(z), sae(x[:10]))


def test_normalisation_is_invisible():
    """Scaling the activations scales the reconstruction: training sees E|x|^2 = d."""
    x, _ = sparse_dictionary_data(n=1024)
    a = train_sae(x, expansion=2, k=3, epochs=1, batch_size=128, seed=2)
    b = train_sae(100 * x, expansion=2, k=3, epochs=1, batch_size=128, seed=2)
    assert float(b.scale) == pytest.approx(100 * float(a.scale), rel=1e-5)
    torch.testing.assert_close(b(100 * x) / 100, a(x), atol=1e-4, rtol=1e-4)
    assert float(a.scale) == pytest.approx(float(x.pow(2).sum(1).mean().div(16).sqrt()), rel=1e-6)


def test_decoder_gradient_is_projected():
    sae = TopKSAE(4, 6, 2, seed=0)
    sae.W_dec.grad = torch.randn(6, 4)
    sae.project_decoder_grad()
    torch.testing.assert_close((sae.W_dec.grad * sae.W_dec).sum(1), torch.zeros(6), atol=1e-6,
                               rtol=0)


@pytest.mark.parametrize("shift", [0.0, -2.5])
def test_sparse_backward_matches_dense(shift):
    """The encoder's sparse backward pass gives the gradient of the dense formula, also
    where fewer than k pre-activations are positive (shift -2.5): a selected latent the
    ReLU holds at 0 passes no gradient."""
    torch.manual_seed(0)
    sae = TopKSAE(5, 12, 3, seed=0).double()
    with torch.no_grad():
        sae.b_enc.normal_().add_(shift)
        sae.b_dec.normal_()
    x = torch.randn(7, 5, dtype=torch.double)
    vals, idx, _ = sae._topk(x)
    (sae._decode_sparse(vals, idx).sin().sum()).backward()
    sparse = [p.grad.clone() for p in (sae.W_enc, sae.b_enc, sae.b_dec)]
    sae.zero_grad()
    pre = torch.relu(nn.functional.linear(x - sae.b_dec, sae.W_enc, sae.b_enc))
    dense = torch.zeros_like(pre).scatter(1, idx, pre.gather(1, idx))
    ((dense @ sae.W_dec).sin().sum()).backward()
    for got, want in zip(sparse, (sae.W_enc.grad, sae.b_enc.grad, sae.b_dec.grad)):
        torch.testing.assert_close(got, want)
    if shift:
        assert (vals == 0).any()  # the case of interest did occur
    if not shift:  # with ties at 0 (shift) any of the tied latents may be selected
        # The top-k selection is exact: the same set as a full sort of the pre-activations.
        want_idx = pre.detach().topk(3, dim=1).indices
        assert torch.equal(idx.sort(1).values, want_idx.sort(1).values)


def test_auxk_revives_dead_latents():
    """Atoms in the positive orthant and a learning rate too large: without AuxK
    a quarter or more of the latents die early and stay dead; AuxK trains them on
    the residual of the live ones and brings most of them back."""
    gen = torch.Generator().manual_seed(0)
    atoms = torch.randn(64, 16, generator=gen).abs()
    atoms /= atoms.norm(dim=1, keepdim=True)
    support = torch.rand(4000, 64, generator=gen).argsort(dim=1)[:, :3]
    x = torch.zeros(4000, 64).scatter(1, support, 0.5 + torch.rand(4000, 3, generator=gen)) @ atoms
    options = dict(n_latents=64, k=3, epochs=2, batch_size=128, seed=0, dead_after=256, lr=0.05)
    dead = {}
    for aux_k in (0, 8):
        sae = train_sae(x, aux_k=aux_k, **options)
        with torch.no_grad():
            z = sae.encode(x)
        dead[aux_k] = float(((z > 0).sum(0) == 0).float().mean())
    assert dead[0] > 0.2
    assert dead[8] < 0.3 * dead[0]


def test_bad_input_is_refused():
    with pytest.raises(LandscapeError, match="acts"):
        train_sae(torch.randn(10, 3, 2))
    with pytest.raises(LandscapeError, match="k: must be <="):
        train_sae(torch.randn(10, 3), expansion=1, k=4)
    with pytest.raises(LandscapeError, match="NaN"):
        train_sae(torch.full((10, 3), float("nan")))


# ----------------------------------------------------------------------------- metrics

def test_fvu_closed_forms():
    x = torch.randn(100, 6)
    mean = x.mean(0, keepdim=True)
    assert fvu(x, x) == 0
    assert fvu(x, mean.expand_as(x)) == pytest.approx(1.0)
    assert fvu(x, mean + 0.5 * (x - mean)) == pytest.approx(0.25)
    assert fvu(x + 10, x + 10) == 0


def _conv_bn_model():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 10))
    model.train()
    return model


@pytest.mark.parametrize("which", ["mlp", "conv"])
def test_exact_reconstruction_recovers_all_loss(which, tiny_mlp, digits_small):
    x, y = digits_small
    model, layer, d = ((tiny_mlp, "act1", 12) if which == "mlp" else (_conv_bn_model(), "2", 4))
    ds = sae_metrics(model, exact_sae(d), x, y, layer)
    assert value(ds, 'fvu') == pytest.approx(0, abs=1e-10)
    assert value(ds, 'cosine') == pytest.approx(1)
    assert value(ds, 'loss_sae') == pytest.approx(value(ds, 'loss_clean'), abs=1e-6)
    assert_recovered(ds, "mean", 1)
    assert_recovered(ds, "zero", 1)
    assert value(ds, 'kl') == pytest.approx(0, abs=1e-6)


def test_mean_reconstruction_recovers_nothing(tiny_mlp, digits_small):
    x, y = digits_small
    vectors, _ = layer_vectors(tiny_mlp, "act1", x)
    ds = sae_metrics(tiny_mlp, mean_sae(12, vectors.mean(0)), x, y, "act1")
    assert value(ds, 'fvu') == pytest.approx(1, abs=1e-6)
    assert_recovered(ds, "mean", 0)
    assert value(ds, 'dead_frac') == 1 and value(ds, 'l0') == 0
    assert value(ds, 'loss_sae') == pytest.approx(value(ds, 'loss_mean_ablated'))


def test_frequency_dead_dense_and_l0():
    """Hand-built activations: latent 0 fires on every row, 1 on 1 row in 20, 2 never."""
    sae = TopKSAE(3, 3, 2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(3))
        sae.W_dec.copy_(torch.eye(3))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    x = torch.zeros(20, 3)
    x[:, 0] = 1
    x[0, 1] = 2
    x[:, 2] = -1
    model = nn.Sequential(nn.Identity(), nn.Linear(3, 2))
    ds = sae_metrics(model, sae, x, torch.zeros(20, dtype=torch.long), "0")
    np.testing.assert_allclose(ds.frequency.squeeze(), [1, 0.05, 0])
    assert value(ds, 'dead_frac') == pytest.approx(1 / 3)
    assert value(ds, 'dense_frac') == pytest.approx(1 / 3)
    assert value(ds, 'l0') == pytest.approx(1.05)


def test_analyses_leave_the_model_untouched(digits_small):
    x, y = digits_small
    model = _conv_bn_model()
    model[1].requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    vectors, _ = layer_vectors(model, "2", x)
    sae = train_sae(vectors, expansion=2, k=2, epochs=1, batch_size=256)
    sae_metrics(model, sae, x, y, "2", maxact_latents=2, maxact_options=dict(steps=3, restarts=2))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == grads


def test_memory_budget_refuses_a_large_cache(tiny_mlp, digits_small):
    x, _ = digits_small
    with pytest.raises(LandscapeError, match="activation cache.*budget"):
        layer_vectors(tiny_mlp, "act1", x, max_memory="1kB")


# ----------------------------------------------------------------------------- interpretability

def test_auroc_against_reference():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=200).astype(float)  # many ties
    labels = rng.random(200) < 0.3
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert auroc(np.arange(4.0), np.array([0, 0, 1, 1])) == 1.0


def test_entropy_bits():
    assert entropy_bits(np.array([1, 2, 3, 4])) == pytest.approx(2)
    assert entropy_bits(np.array([7, 7, 7])) == 0


def _synthetic_latents(tokens: np.ndarray, previous: np.ndarray, rng) -> tuple:
    """Top-2 activations of 22 latents: 0 fires on token 5 (pure token detector),
    1 on the bigram (3, 7), 2..21 on random positions (10 %)."""
    n = len(tokens)
    acts = np.zeros((n, 22))
    acts[:, 0] = np.where(tokens == 5, 1 + rng.random(n), 0)
    acts[:, 1] = np.where((previous == 3) & (tokens == 7), 1 + rng.random(n), 0)
    acts[:, 2:] = np.where(rng.random((n, 20)) < 0.1, rng.random((n, 20)), 0)
    idx = np.argsort(-acts, axis=1, kind="stable")[:, :2]
    return np.take_along_axis(acts, idx, 1), idx


def test_interp_auroc_on_known_latents():
    rng = np.random.default_rng(0)
    split = []
    for _ in range(2):
        seqs = rng.integers(0, 12, size=(200, 32))
        tokens = seqs.reshape(-1)
        previous = np.concatenate([np.full((200, 1), 256), seqs[:, :-1]], 1).reshape(-1)
        split.append((tokens, previous, *_synthetic_latents(tokens, previous, rng)))
    (t_a, p_a, v_a, i_a), (t_b, p_b, v_b, i_b) = split
    features, enrichment = explanations(v_a, i_a, t_a, p_a, 22)
    assert features[0, 0] == 5  # the token itself explains the token detector best
    assert features[1, 0] == 256 + 3 * 256 + 7  # and the bigram the bigram detector
    score = detection_auroc(v_b, i_b, t_b, p_b, features, enrichment, seed=1)
    assert score[0] == 1.0
    assert score[1] == 1.0
    assert abs(np.nanmean(score[2:]) - 0.5) < 0.05


def test_top_positions_are_sorted():
    vals = np.array([[3.0, 1.0], [2.0, 0.0], [5.0, 4.0]])
    idx = np.array([[0, 1], [0, 2], [1, 0]])
    where, act = top_positions(vals, idx, 3, 2)
    np.testing.assert_array_equal(where, [[2, 0], [2, 0], [-1, -1]])
    np.testing.assert_array_equal(act[:2], [[4, 3], [5, 1]])


# ----------------------------------------------------------------------------- command line

def _run(args):
    from click.testing import CliRunner

    from landscape.cli import cli

    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result.exit_code, result.output


CNN = ["sae", "--model", "cnn", "--in-shape", "1x8x8", "--width", "4", "--dataset", "digits",
       "--samples", "96", "--layer", "act2,act3", "--expansion", "2", "--k", "2",
       "--batch-size", "128", "--epochs", "1", "--maxact-latents", "1"]


def test_cli_cnn_train_reload_and_plot(tmp_path):
    import landscape

    out = tmp_path / "r.nc"
    code, text = _run([*CNN, "--out", str(out)])
    assert code == 0, text
    ds = landscape.load(out, kind="sae")
    assert list(ds.layer.values) == ["act2", "act3"] and list(ds.variant.values) == ["init"]
    assert ds.frequency.dims == ("variant", "layer", "latent")
    assert np.isfinite(ds.rho.sel(layer="act2")).sum() == 1  # one latent got maxact metrics
    weights = tmp_path / "r.sae.pt"
    assert weights.is_file() and text.strip().splitlines()[-1] == str(out)
    # Re-analysing the saved SAEs reproduces every metric without training.
    again = tmp_path / "again.nc"
    code, text = _run([*CNN, "--sae", str(weights), "--epochs", "7", "--out", str(again)])
    assert code == 0, text
    ds2 = landscape.load(again)
    for name in ("fvu", "l0", "dead_frac", "loss_recovered_mean", "label_entropy"):
        np.testing.assert_allclose(ds2[name].values, ds[name].values)
    code, text = _run(["plot", str(out), "--out", str(tmp_path / "fig")])
    assert code == 0, text
    assert {p.name for p in (tmp_path / "fig").iterdir()} == {"r_metrics.png", "r_frequency.png"}


def test_cli_refuses_bad_input(tmp_path):
    out = tmp_path / "bad.nc"
    weights = tmp_path / "w.sae.pt"
    weights.write_bytes(b"not a checkpoint")
    for extra, message in ((["--k", "0"], "k: must be >= 1"),
                           (["--sae", str(weights)], "holds no SAE weights"),
                           (["--variant", "trained"], "'trained' needs --checkpoint"),
                           (["--layer", "act2,act2"], "repeated")):
        code, text = _run([*CNN, *extra, "--out", str(out)])
        assert code != 0 and message in text and "Traceback" not in text, text
        assert len(text.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "bad.sae.pt").exists()


def test_bench_smoke(capsys):
    """bench/sae_bench.py --smoke runs its code paths at toy size."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "sae_bench.py"
    spec = importlib.util.spec_from_file_location("sae_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--smoke", "--no-sparsify", "--threads", "1"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    name, fvu_text, dead, rate, cpu_rate = rows[-1].rsplit(maxsplit=4)
    assert name.startswith("landscape") and 0 <= float(fvu_text) < 1
    assert float(rate) > 0 and float(cpu_rate) > 0


def test_sweep_and_compare(tmp_path):
    """`landscape sweep sae` over two seeds, then `compare`: one row per variant's metric."""
    import landscape

    args = ["sweep", "sae", "--model", "cnn", "--init", "default", "--bias-scale", "0",
            "--seeds", "0-1", "--workers", "1", "--out-dir", str(tmp_path),
            "--in-shape", "1x8x8", "--width", "4", "--samples", "48", "--layer", "act2",
            "--expansion", "2", "--k", "2", "--batch-size", "128", "--epochs", "1",
            "--maxact-latents", "0"]
    code, text = _run(args)
    assert code == 0, text
    sweep_file = text.strip().splitlines()[-1]
    ds = landscape.load(sweep_file, kind="sweep")
    assert ds.fvu.sizes["seed"] == 2 and "variant" in ds.fvu.dims
    code, text = _run(["compare", sweep_file, "--by", "seed"])
    assert code == 0, text
    assert "fvu[init]" in text and "dead_frac[init]" in text


def test_token_model_end_to_end():
    """A token model whose layer is its embedding: every latent is a function of
    the current token alone, so its explanation (tokens) predicts it perfectly
    (interp_auroc 1) and its top activations all sit on one token (entropy 0)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(256, 8), nn.Linear(8, 256))
    gen = torch.Generator().manual_seed(0)
    x = 97 + torch.randint(0, 4, (160, 16), generator=gen)
    train_x, eval_x = x[:120], x[120:]
    vectors, per_input = layer_vectors(model, "0", train_x)
    assert per_input == 16 and vectors.shape == (120 * 16, 8)
    sae = train_sae(vectors, expansion=2, k=2, epochs=2, batch_size=256, lr=1e-2)
    ds = sae_metrics(model, sae, eval_x, None, "0", train_x=train_x, variant="v").squeeze()
    auc = ds.interp_auroc.values
    assert np.isfinite(auc).sum() >= 2 and np.all(auc[np.isfinite(auc)] == 1)
    ent = ds.token_entropy.values
    assert np.all(ent[np.isfinite(ent)] == 0)
    assert ds.attrs["modality"] == "tokens"
    # The centre of each stored context is the token at the stored position.
    top = ds.top_sequence.values >= 0
    centre = ds.top_context.sel(offset=0).values
    tokens = eval_x.numpy()[ds.top_sequence.values[top], ds.top_position.values[top]]
    np.testing.assert_array_equal(centre[top], tokens)


# ----------------------------------------------------------------------------- transformer CLI

TINY_TRANSFORMER = dict(width=16, depth=1, heads=2, context=16)


def _tiny_transformer_checkpoint(path):
    """A "trained" tiny transformer: recipe default init, seed 3, every weight then
    moved off its draw (so trained, init and the re-drawn variants all differ)."""
    from landscape import build_model
    from landscape.train import save_checkpoint

    model = build_model("transformer", seed=3, **TINY_TRANSFORMER)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    save_checkpoint(path, model, {"model": "transformer", "init": "default", "bias_scale": None,
                                  "weight_std": None, "seed": 3})
    return model


def _corpus(tmp_path) -> str:
    """A small byte corpus (one standard-library file): ``text:PATH``."""
    import textwrap

    path = tmp_path / "corpus.py"
    path.write_bytes(open(textwrap.__file__, "rb").read())
    return f"text:{path}"


def _rms_scale(model, layer, x) -> float:
    """The SAE's normalising scale for ``layer``: sqrt(mean |v|^2 / d) over its vectors."""
    vectors, _ = layer_vectors(model, layer, x)
    return float(vectors.double().pow(2).sum(1).mean().div(vectors.shape[1]).sqrt())


def test_cli_transformer_variants(tmp_path):
    """`landscape sae` on a tiny transformer checkpoint, every variant: each SAE's
    normalising scale (measured on that variant's own training activations) tells
    which weights the variant ran with; where two variants share the embedded
    vectors, they share the SAE."""
    import landscape
    from landscape import build_model
    from landscape.commands.sae import load_weights

    ckpt = tmp_path / "t.pt"
    trained = _tiny_transformer_checkpoint(ckpt)
    variants = ["trained", "init", "rerandomised", "rerandomised-except-embeddings", "control"]
    out = tmp_path / "r.nc"
    arch = [f"--{k}={v}" for k, v in TINY_TRANSFORMER.items()]
    data = _corpus(tmp_path)
    code, text = _run(["sae", "--model", "transformer", *arch, "--checkpoint", str(ckpt),
                       "--dataset", data, "--samples", "48", "--variant", ",".join(variants),
                       "--layer", "embed,blocks.0", "--expansion", "2", "--k", "4",
                       "--batch-size", "256", "--epochs", "1", "--out", str(out)])
    assert code == 0, text
    ds = landscape.load(out, kind="sae")
    assert sorted(ds.variant.values) == sorted(variants)
    assert sorted(ds.layer.values) == ["blocks.0", "embed"]
    assert np.isfinite(ds.fvu.values).all() and (ds.fvu.values < 1).all()

    # The checkpoint's seed (3) is the recipe's, and draws the samples too.
    x, _ = landscape.load_dataset(data, n=48, seed=3, in_shape=(16,))
    train_x = x[:36]
    scale = {key: float(sae.scale) for key, sae in load_weights(tmp_path / "r.sae.pt").items()}
    step0 = build_model("transformer", seed=3, **TINY_TRANSFORMER)
    for variant, model in (("trained", trained), ("init", step0)):
        for layer in ("embed", "blocks.0"):
            assert scale[f"{variant}/{layer}"] == pytest.approx(_rms_scale(model, layer, train_x),
                                                                 rel=1e-5)
    # Embeddings kept: the same embedded vectors; re-drawn or replaced: other ones.
    assert scale["rerandomised-except-embeddings/embed"] == pytest.approx(scale["trained/embed"],
                                                                          rel=1e-6)
    for variant in ("rerandomised", "control", "init"):
        assert abs(scale[f"{variant}/embed"] / scale["trained/embed"] - 1) > 1e-3, variant
    # The control keeps every weight after the embedding; its blocks see noise tokens.
    assert scale["control/blocks.0"] != pytest.approx(scale["trained/blocks.0"], rel=1e-3)

    # Identical embedded vectors and seed: the same SAE, so the same numbers.
    kept = ds.sel(layer="embed", variant="rerandomised-except-embeddings")
    for name in ("fvu", "l0", "dead_frac", "frequency"):
        np.testing.assert_array_equal(kept[name].values,
                                      ds[name].sel(layer="embed", variant="trained").values)


def test_cli_transformer_closed_forms(tmp_path):
    """`--sae` with constructed SAEs on the transformer's residual stream: an exact
    reconstruction recovers all the loss (1, KL 0, FVU 0) for every variant; the
    layer's mean recovers none of it against mean ablation."""
    import landscape
    from landscape.models.variants import make_variant
    from landscape.sae import sae_state

    ckpt = tmp_path / "t.pt"
    trained = _tiny_transformer_checkpoint(ckpt)
    data = _corpus(tmp_path)
    x, _ = landscape.load_dataset(data, n=48, seed=3, in_shape=(16,))
    d = TINY_TRANSFORMER["width"]
    # Mean ablation uses the evaluation inputs' mean (the last quarter).
    control = make_variant(trained, "control", seed=3)
    mean = layer_vectors(control, "blocks.0", x[36:])[0].double().mean(0).float()
    weights = tmp_path / "c.sae.pt"
    torch.save({"saes": {"trained/blocks.0": sae_state(exact_sae(d)),
                         "rerandomised/blocks.0": sae_state(exact_sae(d)),
                         "control/blocks.0": sae_state(mean_sae(d, mean))}}, weights)
    out = tmp_path / "c.nc"
    arch = [f"--{k}={v}" for k, v in TINY_TRANSFORMER.items()]
    code, text = _run(["sae", "--model", "transformer", *arch, "--checkpoint", str(ckpt),
                       "--dataset", data, "--samples", "48",
                       "--variant", "trained,rerandomised,control",
                       "--layer", "blocks.0", "--sae", str(weights), "--out", str(out)])
    assert code == 0, text
    ds = landscape.load(out, kind="sae").sel(layer="blocks.0")
    for variant in ("trained", "rerandomised"):
        part = ds.sel(variant=variant)
        assert float(part.fvu) == pytest.approx(0, abs=1e-9)
        assert float(part.kl) == pytest.approx(0, abs=1e-6)
        assert_recovered(part, "mean", 1)
        assert_recovered(part, "zero", 1)
        assert float(part.loss_sae) == pytest.approx(float(part.loss_clean), rel=1e-6)
    control = ds.sel(variant="control")
    assert_recovered(control, "mean", 0)
    assert float(control.dead_frac) == 1 and float(control.l0) == 0


# ----------------------------------------------------------------------------- defaults

def test_defaults_resolve_per_kind_of_model():
    """Unset --samples/--batch-size take the kind's values; unset --epochs the fewest
    passes that make MIN_STEPS steps: 4 for the default transformer (1 536 training
    windows of 64 bytes in batches of 1 024: 96 steps an epoch)."""
    from click.testing import CliRunner

    from landscape.cli import cli
    from landscape.commands.sae import SAE_DEFAULTS, resolve_defaults
    from landscape.sae import MIN_STEPS, default_epochs

    assert MIN_STEPS == 384
    assert SAE_DEFAULTS == {"token": {"samples": 2048, "batch_size": 1024},
                            "image": {"samples": 1024, "batch_size": 256},
                            "sentence": {"samples": 256, "batch_size": 256}}
    base = {k: None for k in ("init", "bias_scale", "weight_std", "width", "depth", "activation",
                              "in_shape", "seed", "heads", "context", "tied", "position",
                              "samples", "batch_size", "epochs")}
    for model, dataset, kind in (("transformer", None, "token"), ("cnn", None, "image"),
                                 ("resnet18", "digits", "image"), ("mlp", "text:x.txt", "token"),
                                 ("minilm", None, "sentence")):
        opts = {**base, "model_name": model, "dataset": dataset}
        assert resolve_defaults(opts) == kind
        assert (opts["samples"], opts["batch_size"]) == (SAE_DEFAULTS[kind]["samples"],
                                                         SAE_DEFAULTS[kind]["batch_size"])
        assert opts["epochs"] is None  # resolved per layer
    given = {**base, "model_name": "transformer", "dataset": None, "samples": 10, "batch_size": 7}
    resolve_defaults(given)
    assert (given["samples"], given["batch_size"]) == (10, 7)
    assert default_epochs(1536 * 64, 1024) == 4          # 96 steps an epoch
    assert default_epochs(768, 256) == 128               # resnet18 avgpool: 3 steps an epoch
    assert default_epochs(768 * 64, 256) == 2            # cnn act3 at 32x32: 192 steps an epoch
    assert default_epochs(10**6, 1024) == 1
    assert default_epochs(98304, 1024, tokens=10240) == 39  # --tokens: 10 steps an epoch
    helptext = CliRunner().invoke(cli, ["sae", "--help"], terminal_width=200).output
    for phrase in ("2048 windows for token models", "1024 inputs for image models",
                   "1024 for token models", "256 for image models", "make 384 optimiser steps",
                   "4 for the default transformer"):
        assert phrase in " ".join(helptext.split()), phrase


def _corpus_folder(tmp_path, files=("textwrap.py", "argparse.py")) -> str:
    """A byte corpus of a few standard-library files: ``text:DIR``."""
    import sysconfig
    from pathlib import Path

    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in files:
        (folder / name).write_bytes((Path(sysconfig.get_paths()["stdlib"]) / name).read_bytes())
    return f"text:{folder}"


def test_cli_transformer_defaults_train_the_sae(tmp_path):
    """`landscape sae` on a tiny transformer with no --samples/--epochs/--batch-size:
    2 048 windows, batches of 1 024, 384 steps, and an SAE that has learnt: its
    held-out FVU is a small fraction of the same SAE's before its first step, and of
    one trained with the former defaults (256 windows, one epoch in batches of 4 096:
    a single step).  k = 4 < d = 16, so reconstruction must be learnt."""
    import landscape
    from landscape.commands.sae import load_weights
    from landscape.sae import TopKSAE

    ckpt = tmp_path / "t.pt"
    trained = _tiny_transformer_checkpoint(ckpt)
    data = _corpus_folder(tmp_path)
    out = tmp_path / "r.nc"
    arch = [f"--{k}={v}" for k, v in TINY_TRANSFORMER.items()]
    code, text = _run(["sae", "--model", "transformer", *arch, "--checkpoint", str(ckpt),
                       "--dataset", data, "--layer", "blocks.0", "--k", "4", "--out", str(out)])
    assert code == 0, text
    ds = landscape.load(out, kind="sae")
    sae = load_weights(tmp_path / "r.sae.pt")["trained/blocks.0"]
    config = json.loads(ds.attrs["config"])
    assert config["n_samples"] == 512  # the evaluation quarter of 2 048
    # 1 536 training windows of 16 bytes = 24 576 vectors, 24 steps an epoch: 16 epochs.
    assert (config["samples"], config["sae"]["batch_size"]) == (2048, 1024)
    assert (config["sae"]["epochs"], config["sae"]["steps"]) == (16, 384)
    x, _ = landscape.load_dataset(data, n=2048, seed=3, in_shape=(16,))
    train_v, _ = layer_vectors(trained, "blocks.0", x[:1536])
    eval_v, _ = layer_vectors(trained, "blocks.0", x[1536:])
    # The same SAE before its first step (train_sae's initialisation, module docstring).
    scale = float(train_v.double().pow(2).sum(1).mean().div(train_v.shape[1]).sqrt())
    assert float(sae.scale) == pytest.approx(scale, rel=1e-5)
    start = TopKSAE(sae.d, sae.n_latents, sae.k, scale=scale, seed=3)
    with torch.no_grad():
        start.b_dec.copy_(train_v.mean(0) / scale)
    with torch.no_grad():
        untrained = fvu(eval_v, start(eval_v))
    trained_fvu = float(ds.fvu.squeeze())
    assert trained_fvu == pytest.approx(fvu(eval_v, sae(eval_v)), rel=1e-4)
    former = train_sae(train_v[:192 * 16], k=4, epochs=1, batch_size=4096, seed=3)
    former_fvu = fvu(eval_v, former(eval_v))
    # Measured: 0.087 against 1.04 untrained and 0.51 with the former defaults.
    assert untrained > 0.9 and former_fvu > 0.4
    assert trained_fvu < 0.15 and trained_fvu < 0.25 * former_fvu
