"""Figures drawn from saved results: where they go, and that every kind is
readable (no two visible texts overlap)."""

from pathlib import Path

import pytest
from test_bad_input import CNN_SAE, HESSIAN, MLP, SLICE, invoke

import landscape


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_plot_defaults_to_a_folder_named_after_the_result():
    assert invoke([*SLICE, "--space", "input", "--out", "s.nc"]).exit_code == 0
    res = invoke(["plot", "s.nc"])
    assert res.exit_code == 0, res.output
    assert not list(Path(".").glob("*.png"))
    assert sorted(p.name for p in Path("s_figures").iterdir()) == ["s_activation.png",
                                                                   "s_barriers.png"]


# ----------------------------------------------------------------------------- figures

def _text_overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty text artists whose boxes overlap by more than
    two pixels each way, after the figure is drawn."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    # Tick labels outside the view keep stale positions and are not drawn: take the
    # drawn ones from their axis.  An x tick label beside a y tick label of the same
    # axes meet at its corner by design.
    ticks, drawn = {}, []
    for ax in fig.axes:
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks.update({id(tick.label1): None, id(tick.label2): None})
            if not (ax.axison and axis.get_visible() and ax.get_visible()):
                continue
            for tick in axis._update_ticks():
                for label in (tick.label1, tick.label2):
                    ticks[id(label)] = (id(ax), name)
                    drawn.append(label)
    boxes = []
    for t in [*(t for t in fig.findobj(Text) if id(t) not in ticks), *drawn]:
        if not t.get_visible() or not t.get_text().strip():
            continue
        if t.axes is not None and not t.axes.get_visible():
            continue
        box = t.get_window_extent(renderer)
        if box.width > 0 and box.height > 0:
            boxes.append((t.get_text(), box, ticks.get(id(t))))
    found = []
    for i, (a, ba, ta) in enumerate(boxes):
        for b, bb, tb in boxes[i + 1:]:
            if ta and tb and ta[0] == tb[0] and ta[1] != tb[1]:
                continue
            dx = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
            dy = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
            if dx > 2 and dy > 2:
                found.append((a, b))
    return found


@pytest.fixture
def figures(monkeypatch):
    """Every figure saved while the test runs: ``{file name: (overlaps, texts, fig)}``."""
    from matplotlib.figure import Figure

    drawn = {}
    save = Figure.savefig

    def checked(self, fname, *args, **kwargs):
        from matplotlib.text import Text

        texts = [t.get_text() for t in self.findobj(Text)]
        labels = [(ax.get_xlabel(), ax.get_ylabel()) for ax in self.axes]
        drawn[Path(str(fname)).name] = (_text_overlaps(self), texts, labels)
        return save(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    return drawn


def _plot(path, figures):
    res = invoke(["plot", path, "--out", "figs"])
    assert res.exit_code == 0, res.output
    names = [Path(p).name for p in res.stdout.split()]
    assert names and all(n in figures for n in names), (names, list(figures))
    for name in names:
        assert figures[name][0] == [], (name, figures[name][0])
    return names


def test_slice_figures_are_readable(figures):
    assert invoke([*SLICE, "--loss", "mse", "--out", "s.nc"]).exit_code == 0
    assert invoke([*SLICE, "--space", "input", "--dims", "2", "--out", "s2.nc"]).exit_code == 0
    assert invoke([*SLICE, "--space", "loss", "--dims", "1", "--loss", "mse",
                   "--out", "s1.nc"]).exit_code == 0
    _plot("s.nc", figures)
    _plot("s2.nc", figures)
    _plot("s1.nc", figures)
    _, texts, labels = figures["s_loss.png"]
    assert any("mse" in t for t in texts) and any("mse" in t for t in figures["s1_loss.png"][1])
    assert any("levels" in y for x, y in labels), labels  # the colourbar's scale
    assert any("centre" in t for t in texts), texts  # the red +
    _, texts, labels = figures["s_activation.png"]
    assert all("α" in x and "activation" in y for x, y in labels[:2]), labels


def test_hessian_and_input_hessian_figures_are_readable(figures):
    assert invoke([*HESSIAN, "--density", "--density-runs", "2", "--density-steps", "8",
                   "--out", "h.nc"]).exit_code == 0
    assert invoke([*HESSIAN, "--space", "input", "--units", "2", "--anchors", "2", "--density",
                   "--density-runs", "1", "--density-steps", "6", "--out", "ih.nc"]).exit_code == 0
    _plot("h.nc", figures)
    _plot("ih.nc", figures)


def test_maxact_and_tsne_figures_are_readable(figures):
    res = invoke(["maxact", *MLP, "--samples", "48", "--units", "3", "--top-k", "3", "--restarts", "2",
                  "--steps", "5", "--relate", "--null", "1", "--out", "m.nc"])
    assert res.exit_code == 0, res.output
    assert invoke(["tsne", *MLP, "--samples", "48", "--units", "3", "--n-iter", "20", "--pca-dims",
                   "8", "--perplexity", "5", "--out", "t.nc"]).exit_code == 0
    assert len(_plot("m.nc", figures)) == 3
    _plot("t.nc", figures)


def test_sae_figures_are_readable(figures):
    Path("corpus.txt").write_text("def f(x):\n    return x + 1\n" * 60)
    args = ["sae", "--model", "transformer", "--width", "16", "--depth", "1", "--heads", "2",
            "--context", "16", "--dataset", "text:corpus.txt", "--samples", "24",
            "--variant", "init,rerandomised,control,init:xavier:0.1", "--layer", "embed",
            "--expansion", "2", "--k", "4", "--batch-size", "128", "--epochs", "1", "--out", "x.nc"]
    res = invoke(args)
    assert res.exit_code == 0, res.output
    assert invoke([*CNN_SAE, "--out", "c.nc"]).exit_code == 0
    assert "x_contexts.png" in _plot("x.nc", figures)
    _plot("c.nc", figures)


def test_sweep_figures_are_readable(figures):
    from landscape.sweep import combine

    for bias in ("0", "0.5"):
        res = invoke([*SLICE, "--space", "input", "--bias-scale", bias, "--out", f"b{bias}.nc"])
        assert res.exit_code == 0, res.output
    landscape.save(combine(["b0.nc", "b0.5.nc"]), "sweep.nc")
    _plot("sweep.nc", figures)
