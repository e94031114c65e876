"""The byte-level transformer, its initialisation, units and embedded input view;
the byte-sequence datasets (pysource, text:PATH)."""

import hashlib
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import landscape
from landscape.cli import cli
from landscape.data import corpus_files, is_test_file, text_stream, unigram_bits
from landscape.losses import Objective
from landscape.models import input_view, unit_activations


def tiny(**kw):
    options = dict(width=16, depth=2, heads=2, context=12, seed=0)
    options.update(kw)
    return landscape.build_model("transformer", **options)


def tokens(n=3, t=12, seed=0):
    return torch.randint(0, 256, (n, t), generator=torch.Generator().manual_seed(seed))


def test_matches_torch_pre_norm_encoder_layers_with_a_causal_mask():
    """Reference: torch's TransformerEncoderLayer (norm_first, GELU, no dropout)
    with the same weights and a causal mask, then our final LayerNorm and head."""
    torch.manual_seed(0)
    model = tiny(init="xavier", bias_scale=0.3).double()
    x = tokens(3, 10)
    ref = []
    for block in model.blocks:
        layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=64, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True).double()
        layer.self_attn.in_proj_weight.data.copy_(block.attn.qkv.weight)
        layer.self_attn.in_proj_bias.data.copy_(block.attn.qkv.bias)
        layer.self_attn.out_proj.weight.data.copy_(block.attn.proj.weight)
        layer.self_attn.out_proj.bias.data.copy_(block.attn.proj.bias)
        for ours, theirs in ((block.mlp.fc, layer.linear1), (block.mlp.proj, layer.linear2),
                             (block.ln1, layer.norm1), (block.ln2, layer.norm2)):
            theirs.weight.data.copy_(ours.weight)
            theirs.bias.data.copy_(ours.bias)
        ref.append(layer.eval())
    mask = nn.Transformer.generate_square_subsequent_mask(10, dtype=torch.float64)
    h = model.embed.weight[x] + model.pos.weight[:10]
    for layer in ref:
        h = layer(h, src_mask=mask, is_causal=True)
    expected = model.ln_f(h) @ model.embed.weight.T  # tied head
    out = model(x)
    assert out.shape == (3, 10, 256)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_causal_tied_untied_and_context():
    model = tiny()
    x = tokens(2, 12)
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 1) % 256  # change the future of position 6
    a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-4
    assert model.head.weight is model.embed.weight
    untied = tiny(tied=False)
    assert untied.head.weight is not untied.embed.weight
    assert "head.weight" in untied.state_dict()
    with pytest.raises(landscape.LandscapeError, match="exceeds the context"):
        model(tokens(1, 13))
    with pytest.raises(landscape.LandscapeError, match="multiple of heads"):
        tiny(width=10, heads=4)
    with pytest.raises(landscape.LandscapeError, match="takes no in_shape"):
        landscape.build_model("transformer", in_shape=(1, 8, 8))
    assert model.in_shape == (12,) and model.num_classes == 256


def test_gpt2_default_init_and_named_inits_reach_embeddings_and_layernorms():
    model = landscape.build_model("transformer", width=64, depth=4, seed=1)
    assert model.embed.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert model.pos.weight.std().item() == pytest.approx(0.02, rel=0.05)
    proj = torch.cat([b.mlp.proj.weight.flatten() for b in model.blocks])
    assert proj.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.03)
    assert float(model.blocks[0].attn.qkv.bias.detach().abs().max()) == 0
    # xavier on an embedding (256, d): the one-hot linear map, U(±sqrt(6 / (256 + d))).
    model = landscape.build_model("transformer", init="xavier", bias_scale=0.5, width=64, context=128,
                                  seed=1)
    bound = math.sqrt(6 / (256 + 64))
    w = model.embed.weight
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.95 * bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    pos_bound = math.sqrt(6 / (128 + 64))  # position table (context 128, d)
    assert model.pos.weight.std().item() == pytest.approx(pos_bound / math.sqrt(3), rel=0.03)
    # LayerNorm scales 1; shifts and linear biases drawn with the bias scale.
    assert float((model.ln_f.weight - 1).abs().max()) == 0
    shifts = torch.cat([model.ln_f.bias] + [b.ln1.bias for b in model.blocks])
    assert shifts.std().item() == pytest.approx(0.5, rel=0.25)
    assert model.head.weight is model.embed.weight  # still tied after re-drawing
    # kaiming: fan-in of the one-hot map is the vocabulary, not the width.
    model = landscape.build_model("transformer", init="kaiming", width=64, seed=1)
    assert model.embed.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.03)


def test_units_are_features_at_one_position():
    model = tiny(position=-1)
    x = tokens(4, 12)
    captured = {}
    hooks = [dict(model.named_modules())[n].register_forward_hook(
        lambda m, i, o, n=n: captured.__setitem__(n, o)) for n in ("blocks.1", "blocks.0.mlp.act")]
    model(x)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(unit_activations(model, None, x), captured["blocks.1"][:, -1])
    torch.testing.assert_close(unit_activations(model, "blocks.0.mlp.act", x, [0, 5]),
                               captured["blocks.0.mlp.act"][:, -1, [0, 5]])
    third = tiny(position=3)
    torch.testing.assert_close(unit_activations(third, "blocks.0", x),
                               captured_at(third, "blocks.0", x)[:, 3])


def captured_at(model, name, x):
    out = []
    h = dict(model.named_modules())[name].register_forward_hook(lambda m, i, o: out.append(o))
    model(x)
    h.remove()
    return out[0]


def test_embedded_view_shares_modules_and_reproduces_the_model():
    model = tiny(tied=False)
    x = tokens(3, 12)
    view, e = input_view(model, x)
    assert e.shape == (3, 12, 16) and not e.requires_grad
    torch.testing.assert_close(view(e), model(x))
    assert dict(view.named_modules()).keys() == dict(model.named_modules()).keys()
    assert all(p is q for p, q in zip(view.parameters(), model.parameters()))
    assert view.in_shape == (12, 16)
    # An input-space derivative is the derivative wrt the token embedding.
    e = e.clone().requires_grad_(True)
    unit_activations(view, "blocks.1", e, [2]).sum().backward()
    assert e.grad.abs().sum() > 0
    with pytest.raises(landscape.LandscapeError, match="token ids"):
        model(e.detach())


def test_next_token_loss_is_cross_entropy_over_every_position():
    model = tiny()
    x = tokens(3, 13)
    inp, target = x[:, :-1], x[:, 1:]
    logits = model(inp)
    expected = nn.functional.cross_entropy(logits.reshape(-1, 256), target.reshape(-1),
                                           reduction="none").reshape(3, 12).mean(1)
    torch.testing.assert_close(Objective(model)(logits, inp, target), expected.mean())


# ----------------------------------------------------------------------------- byte datasets

@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    for i in range(40):
        folder = root / f"d{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.txt").write_bytes(rng.integers(0, 256, size=50 + 7 * i, dtype=np.uint8).tobytes())
    (root / ".hidden").write_bytes(b"never read")
    return root


def test_text_split_is_by_file_deterministic_and_windows_are_the_bytes(corpus):
    name = f"text:{corpus}"
    files = corpus_files(name)
    assert [rel for rel, _ in files] == sorted(rel for rel, _ in files)
    assert all(not rel.startswith(".") for rel, _ in files) and len(files) == 40
    test = [rel for rel, _ in files if is_test_file(rel)]
    # The rule, computed here from its definition: sha256 of the relative path, 0 mod 10.
    assert test == [rel for rel, _ in files
                    if int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") % 10 == 0]
    assert 0 < len(test) < 40
    # The rule is a function of the relative path alone.
    assert [is_test_file(rel) for rel, _ in files] == [is_test_file(rel) for rel, _ in files[::-1]][::-1]
    for split, chosen in (("train", [r for r, _ in files if r not in test]), ("test", test)):
        stream = b"".join((corpus / rel).read_bytes() for rel in chosen)
        assert text_stream(name, split).tobytes() == stream
        x, y = landscape.load_dataset(name, split=split, in_shape=(16,))
        assert x.dtype == torch.int64 and x.shape[1] == 16
        torch.testing.assert_close(x[:, 1:], y[:, :-1])
        torch.testing.assert_close(y[:-1, -1], x[1:, 0])  # windows overlap by one byte
        rebuilt = torch.cat([x.reshape(-1), y[-1, -1:]]).to(torch.uint8).numpy().tobytes()
        assert rebuilt == stream[:len(rebuilt)] and len(stream) - len(rebuilt) < 16
    again = landscape.load_dataset(name, split="test", in_shape=(16,), n=5, seed=2)
    assert torch.equal(again[0], landscape.load_dataset(name, split="test", in_shape=(16,), n=5, seed=2)[0])


def test_single_file_is_split_by_bytes(tmp_path):
    path = tmp_path / "one.txt"
    data = bytes(range(256)) * 4
    path.write_bytes(data)
    train = text_stream(f"text:{path}", "train").tobytes()
    test = text_stream(f"text:{path}", "test").tobytes()
    assert train + test == data and len(test) == len(data) - int(len(data) * 0.9)


def test_pysource_is_the_standard_library_split_by_file():
    files = corpus_files("pysource")
    rels = [rel for rel, _ in files]
    assert "os.py" in rels and "json/decoder.py" in rels
    assert not any("site-packages" in rel for rel in rels)
    test = {rel for rel in rels if is_test_file(rel)}
    assert test == {rel for rel in rels
                    if int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") % 10 == 0}
    assert 0.05 < len(test) / len(rels) < 0.15
    x, y = landscape.load_dataset("pysource", split="test", in_shape=(64,), n=8, seed=0)
    assert x.shape == (8, 64) and int(x.max()) < 256


def test_unigram_bits_is_the_cross_entropy_of_the_train_distribution():
    train = torch.tensor([0, 0, 0, 1])
    test = torch.tensor([0, 1])
    # add-one over a vocabulary of 4: p(0) = 4/8, p(1) = 2/8
    assert unigram_bits(train, test, vocab=4) == pytest.approx(0.5 * (1 + 2))


def test_datasets_refuse_the_wrong_kind_of_model():
    with pytest.raises(landscape.LandscapeError, match="holds images"):
        landscape.load_dataset("digits", in_shape=(32,))
    with pytest.raises(landscape.LandscapeError, match="byte sequences"):
        landscape.load_dataset("pysource", in_shape=(1, 8, 8), n=4)
    with pytest.raises(landscape.LandscapeError, match="no such file"):
        landscape.load_dataset("text:/no/such/place")


def test_cli_analyses_of_a_transformer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--model", "transformer", "--width", "16", "--depth", "1", "--heads", "2",
              "--context", "16", "--samples", "16"]
    run = CliRunner().invoke
    res = run(cli, ["slice", *common, "--space", "both", "--grid", "-1:1:3", "--units", "2",
                    "--anchors", "2", "--out", "s.nc"])
    assert res.exit_code == 0, res.output
    ds = landscape.load("s.nc")
    assert ds.attrs["dataset"] == "pysource" and ds.sizes["unit"] == 2
    assert np.isfinite(ds.loss.values).all()
    # The loss at the centre is the next-token cross-entropy of the data used.
    model = landscape.build_model("transformer", width=16, depth=1, heads=2, context=16)
    x, y = landscape.load_dataset("pysource", n=16, in_shape=(16,))
    centre = float(ds.loss.sel(alpha=0, beta=0))
    assert centre == pytest.approx(float(Objective(model)(model(x), x, y)), rel=1e-5)
    res = run(cli, ["hessian", *common, "--space", "input", "--units", "1", "--anchors", "1",
                    "--top-k", "1", "--out", "h.nc"])
    assert res.exit_code == 0, res.output
    res = run(cli, ["slice", *common, "--dataset", "digits", "--out", "bad.nc"])
    assert res.exit_code != 0 and "holds images" in res.output and "Traceback" not in res.output
    res = run(cli, ["slice", "--model", "mlp", "--dataset", "pysource", "--out", "bad.nc"])
    assert res.exit_code != 0 and "byte sequences" in res.output
    assert not (tmp_path / "bad.nc").exists()


def test_training_a_tiny_transformer_beats_the_unigram_baseline(tmp_path):
    import textwrap

    from landscape.train import evaluate, train

    path = tmp_path / "textwrap.py"
    path.write_bytes(open(textwrap.__file__, "rb").read())
    x, y = landscape.load_dataset(f"text:{path}", split="train", in_shape=(32,))
    xt, yt = landscape.load_dataset(f"text:{path}", split="test", in_shape=(32,))
    model = landscape.build_model("transformer", width=32, depth=1, heads=2, context=32, seed=0)
    before, _ = evaluate(model, xt, yt)
    history, _ = train(model, x, y, xt, yt, epochs=8, optimizer="adamw", lr=1e-2, batch_size=16,
                       schedule="cosine", warmup=10, clip=1.0, weight_decay=0.1, seed=0)
    unigram = unigram_bits(x, xt)
    bits = history["test_loss"][-1] / math.log(2)
    assert before / math.log(2) > 7.5  # untrained: about log2(256) = 8 bits
    assert bits < 0.9 * unigram, (bits, unigram)  # measured: 3.64 against 4.38
    assert 0.2 < history["test_accuracy"][-1] < 1  # a fraction of positions
