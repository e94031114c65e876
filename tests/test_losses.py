"""loss_fn through slices, Hessians and training, against closed forms and dense
Hessians in float64: a linear model under MSE (H = 2/(N d) · I_d ⊗ XᵀX) and a
next-token model with (B, T, V) logits."""

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import landscape
from landscape import LandscapeError, hessian_spectrum, loss_slice, top_eigenvectors
from landscape.cli import cli
from landscape.losses import Objective
from landscape.train import train

N, P, D = 10, 4, 3  # samples, inputs, outputs


@pytest.fixture
def regression():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, P, generator=gen, dtype=torch.float64)
    y = torch.randn(N, D, generator=gen, dtype=torch.float64)
    model = nn.Linear(P, D, bias=False).double()
    return model, x, y


def closed_form_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of 2/(N d) · I_d ⊗ XᵀX, ascending: those of 2/(N d) XᵀX, each
    D times (block Lanczos resolves the multiplicity)."""
    H = 2 / (N * D) * torch.kron(torch.eye(D, dtype=x.dtype), x.T @ x)
    values = torch.linalg.eigvalsh(H)
    torch.testing.assert_close(values, torch.linalg.eigvalsh(2 / (N * D) * x.T @ x)
                               .repeat_interleave(D))
    return values


@pytest.mark.parametrize("loss_fn", ["mse", lambda out, target: ((out - target) ** 2).mean()])
def test_hessian_ends_under_mse_match_the_closed_form(regression, loss_fn):
    model, x, y = regression
    truth = closed_form_spectrum(x)
    # Batches of 3, 3, 3 and 1: the size weighting must make them the full mean.
    ds = hessian_spectrum(model, x, y, top_k=2, bottom_k=2, loss_fn=loss_fn, batch_size=3,
                          tol=1e-10)
    expected = torch.cat([truth[-2:].flip(0), truth[:2].flip(0)])
    torch.testing.assert_close(torch.as_tensor(ds.eigenvalue.values), expected, rtol=1e-7,
                               atol=1e-9)
    assert ds.attrs["loss_function"] in ("mse", "<lambda>")


def test_top_eigenvectors_take_the_loss(regression):
    model, x, y = regression
    values, _ = top_eigenvectors(model, x, y, k=1, loss_fn="mse", batch_size=4)
    torch.testing.assert_close(values[0], closed_form_spectrum(x)[-1], rtol=1e-6, atol=0)


def test_mse_slice_matches_the_closed_form_along_a_line(regression):
    model, x, y = regression
    direction = {"weight": torch.randn(D, P, generator=torch.Generator().manual_seed(1),
                                       dtype=torch.float64)}
    ds = loss_slice(model, x, y, directions=[direction], dims=1, grid="-1:1:5", loss_fn="mse",
                    batch_size=3, engine="vmap")
    w = model.weight.detach()
    for alpha in ds.alpha.values:
        expected = ((x @ (w + alpha * direction["weight"]).T - y) ** 2).mean()
        assert float(ds.loss.sel(alpha=alpha)) == pytest.approx(float(expected), rel=1e-10)
    assert ds.attrs["loss_function"] == "mse"
    assert ds.accuracy.isnull().all()  # regression targets: no accuracy


def test_default_loss_is_cross_entropy_and_mse_for_the_autoencoder():
    clf = nn.Linear(3, 4)
    out, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    assert float(Objective(clf)(out, None, y)) == pytest.approx(float(F.cross_entropy(out, y)))
    clf.task = "reconstruct"
    x = torch.randn(5, 4)
    assert float(Objective(clf)(out, x, y)) == pytest.approx(float(F.mse_loss(out, x)))


class NextToken(nn.Module):
    """Embedding, one token-mixing linear map, logits over the vocabulary: (B, T) -> (B, T, V)."""

    def __init__(self, vocab=5, dim=3, length=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(length, length, bias=False)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens):
        h = self.embed(tokens)  # B, T, dim
        h = torch.tanh(self.mix(h.transpose(1, 2)).transpose(1, 2))
        return self.head(h)


def test_sequence_cross_entropy_hessian_and_slice_match_dense_ground_truth():
    torch.manual_seed(0)
    model = NextToken().double()
    tokens = torch.randint(0, 5, (6, 5))
    x, y = tokens[:, :-1], tokens[:, 1:]  # next-token targets (B, T)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def mean_loss(theta):
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = theta[start:start + shape.numel()].view(shape)
            start += shape.numel()
        logits = torch.func.functional_call(model, params, (x,))
        return F.cross_entropy(logits.reshape(-1, 5), y.reshape(-1))

    truth = torch.linalg.eigvalsh(torch.func.hessian(mean_loss)(flat))
    ds = hessian_spectrum(model, x, y, top_k=1, bottom_k=1, batch_size=4, tol=1e-10,
                          loss_fn="cross-entropy")
    torch.testing.assert_close(torch.as_tensor(ds.eigenvalue.values),
                               torch.stack([truth[-1], truth[0]]), rtol=1e-6, atol=1e-9)
    sl = loss_slice(model, x, y, directions="random", dims=1, grid="-1:1:3", batch_size=4)
    assert float(sl.loss.sel(alpha=0)) == pytest.approx(float(mean_loss(flat)), rel=1e-10)
    with torch.no_grad():
        hits = (model(x).argmax(-1) == y).double().mean()
    assert float(sl.accuracy.sel(alpha=0)) == pytest.approx(float(hits))  # per token


def test_train_takes_one_exact_sgd_step_on_the_given_loss(regression):
    model, x, y = regression
    w0 = model.weight.detach().clone()
    lr = 0.1
    train(model, x, y, x, y, epochs=1, optimizer="sgd", lr=lr, momentum=0.0, batch_size=N,
          loss_fn="mse")
    grad = 2 / (N * D) * (x @ w0.T - y).T @ x
    torch.testing.assert_close(model.weight.detach(), w0 - lr * grad, rtol=1e-12, atol=1e-12)


def test_bce_and_nll_and_one_hot_targets():
    out = torch.randn(6, 3, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    one_hot = F.one_hot(labels, 3).double()
    model = nn.Identity()
    assert float(Objective(model, "bce")(out, None, labels)) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(out, one_hot)))
    assert float(Objective(model, "mse")(out, None, labels)) == pytest.approx(
        float(F.mse_loss(out, one_hot)))
    logp = torch.log_softmax(out, -1)
    assert float(Objective(model, "nll")(logp, None, labels)) == pytest.approx(
        float(F.cross_entropy(out, labels)))


def test_bad_losses_are_clear_errors(regression):
    model, x, y = regression
    with pytest.raises(LandscapeError, match="loss: unknown value 'nosuch'"):
        hessian_spectrum(model, x, y, loss_fn="nosuch")
    with pytest.raises(LandscapeError, match="class indices of shape"):
        hessian_spectrum(model, x, torch.zeros(N, 2, dtype=torch.long), loss_fn="cross-entropy")
    with pytest.raises(LandscapeError, match="must return a scalar mean"):
        hessian_spectrum(model, x, y, loss_fn=lambda out, target: (out - target) ** 2)


def test_cli_loss_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["slice", "--model", "mlp", "--samples", "32", "--space", "loss", "--dims", "1",
            "--grid", "-1:1:3", "--loss", "mse", "--out", "s.nc"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    ds = landscape.load("s.nc")
    model = landscape.build_model("mlp")
    x, y = landscape.load_dataset("digits", n=32, in_shape=model.in_shape)
    with torch.no_grad():
        expected = F.mse_loss(model(x), F.one_hot(y, 10).float())
    assert ds.attrs["loss_function"] == "mse"
    assert float(ds.loss.sel(alpha=0)) == pytest.approx(float(expected), rel=1e-5)
    res = CliRunner().invoke(cli, [*args[:-2], "--loss", "hinge"])
    assert res.exit_code == 2 and "Invalid value for '--loss'" in res.output
