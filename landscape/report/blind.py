"""A blind test: can a person tell a trained network's units from a random one's
by their top examples?  (Borowski et al., ICLR 2021; Zimmermann et al., 2021.)

:func:`build_blind` writes ``blind.html``: N cards, half drawn from each of two
``maxact`` results in a seeded random order, labels hidden; the key lies in
``key.json`` beside the page and no page or script refers to it.
:func:`score_answers` scores an exported answers file against the key
(accuracy, AUROC of the signed confidences with a bootstrap 95 % interval,
one-sided binomial p against chance) as a result of kind ``blind``.
:func:`purity_observer` is the scripted baseline: it answers from the label
purity of each card's top examples.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import LandscapeError
from ..results import load
from .html import image_strip, page, write_assets, write_data
from .site import fresh_folder

LABELS = ("learned", "random")


def _state(ds, path) -> str:
    a = ds.attrs
    return a.get("state") or ("trained" if a.get("checkpoint") else "random")


def build_blind(a, b, out, n: int = 40, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the blind page of ``n`` cards (half from each of the maxact results
    ``a`` and ``b``, one trained and one random) and its key to ``out``."""
    if n < 2 or n % 2:
        raise LandscapeError(f"n: must be an even number ≥ 2, got {n}")
    sources = {}
    for tag, path in (("A", a), ("B", b)):
        ds = load(path, kind="maxact")
        if "topk_image" not in ds:
            raise LandscapeError(f"{str(path)!r} holds no top-k images to show")
        sources[tag] = (Path(path), ds, _state(ds, path))
    states = {tag: s for tag, (_, _, s) in sources.items()}
    if sorted(states.values()) != ["random", "trained"]:
        raise LandscapeError(f"blind: need one trained and one random result, got "
                             f"A={states['A']}, B={states['B']}")
    rng = np.random.default_rng(seed)
    drawn = []
    for tag, (path, ds, state) in sources.items():
        units = ds.unit.values
        if len(units) < n // 2:
            raise LandscapeError(f"n: {n} cards need {n // 2} units from each result; "
                                 f"{str(path)!r} has {len(units)}")
        for unit in rng.choice(units, size=n // 2, replace=False):
            drawn.append((tag, int(unit), "learned" if state == "trained" else "random"))
    order = rng.permutation(len(drawn))
    cards = [(f"card{i + 1:03d}", *drawn[j]) for i, j in enumerate(order)]
    digest = hashlib.sha256(json.dumps([str(sources["A"][0]), str(sources["B"][0]), n, seed,
                                        cards]).encode()).hexdigest()[:16]
    key = {"blind_id": digest, "seed": seed, "n": n,
           "sources": {tag: {"file": str(p.resolve()), "state": s, "model": ds.attrs.get("model"),
                             "init": ds.attrs.get("init"), "bias_scale": ds.attrs.get("bias_scale"),
                             "layer": ds.attrs.get("layer")}
                       for tag, (p, ds, s) in sources.items()},
           "cards": [{"id": cid, "source": tag, "unit": unit, "truth": truth}
                     for cid, tag, unit, truth in cards]}
    with fresh_folder(out, overwrite) as site:
        write_assets(site)
        (site / "cards").mkdir()
        html_cards = []
        for cid, tag, unit, _ in cards:
            ds = sources[tag][1]
            w, h = image_strip(list(ds.topk_image.sel(unit=unit).values), site / "cards" / f"{cid}.png")
            html_cards.append(_card_html(cid, w, h))
        write_data(site / "blind_data.js", "LANDSCAPE_BLIND",
                   {"blind_id": digest, "cards": [c[0] for c in cards]})
        body = ("<h1>Blind test: learned feature or random?</h1>"
                "<p>Each card shows the dataset examples that drive one unit most. Half the units "
                "come from a trained network, half from an untrained one. Mark each card and give "
                "your confidence (1 = a guess, 5 = sure). Answers stay in this browser until you "
                "export them.</p>"
                '<div class="controls"><label for="observer">your name or code</label>'
                '<input id="observer" type="text" autocomplete="off">'
                '<button id="export" type="button">export answers (JSON)</button>'
                '<button id="clear" type="button">forget answers</button>'
                '<span id="progress" aria-live="polite"></span></div>'
                '<div class="cards">' + "\n".join(html_cards) + "</div>")
        (site / "blind.html").write_text(
            page("Blind test", body, data=("blind_data.js",), scripts=("blind.js",)),
            encoding="utf-8")
        (site / "key.json").write_text(json.dumps(key, indent=1), encoding="utf-8")
    return Path(out) / "blind.html"


def _card_html(cid: str, w: int, h: int) -> str:
    number = int(cid[4:])
    labels = "".join(f'<label><input type="radio" name="{cid}-label" value="{v}"> {v}</label>'
                     for v in LABELS)
    conf = "".join(f'<label><input type="radio" name="{cid}-conf" value="{c}"> {c}</label>'
                   for c in range(1, 6))
    return (f'<article class="card answer" id="{cid}"><h3>card {number}</h3>'
            f'<img src="cards/{cid}.png" width="{w}" height="{h}" loading="lazy" '
            f'alt="top dataset examples of the unit on card {number}">'
            f'<fieldset><legend>card {number}: this unit is</legend>{labels}</fieldset>'
            f'<fieldset><legend>card {number}: confidence</legend>{conf}</fieldset></article>')


# ----------------------------------------------------------------------------- scoring

def auroc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``truth`` (1 = positive), ties
    counted half (the Mann-Whitney U over n_pos·n_neg); NaN if a class is missing."""
    truth = np.asarray(truth, bool)
    pos, neg = np.asarray(score, float)[truth], np.asarray(score, float)[~truth]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def bootstrap_auroc(truth, score, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95 % interval of the AUROC over cards resampled with
    replacement (resamples holding one class only are skipped)."""
    rng = np.random.default_rng(seed)
    truth, score = np.asarray(truth, bool), np.asarray(score, float)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(truth), len(truth))
        v = auroc(truth[idx], score[idx])
        if np.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def read_key(path) -> dict:
    try:
        key = json.loads(Path(path).read_text(encoding="utf-8"))
        key["cards"], key["blind_id"]  # noqa: B018  (both must be there)
    except FileNotFoundError:
        raise LandscapeError(f"no such file {str(path)!r}") from None
    except (ValueError, KeyError, TypeError):
        raise LandscapeError(f"{str(path)!r} is not the key of a blind test") from None
    return key


def read_answers(path) -> dict:
    try:
        answers = json.loads(Path(path).read_text(encoding="utf-8"))
        answers["answers"].items()
    except FileNotFoundError:
        raise LandscapeError(f"no such file {str(path)!r}") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise LandscapeError(f"{str(path)!r} is not an answers file exported by a blind page") from None
    return answers


def score_answers(answers: dict, key: dict, n_boot: int = 2000, seed: int = 0) -> xr.Dataset:
    """The result (kind ``blind``) of one observer's answers against the key."""
    from scipy.stats import binomtest

    if answers.get("blind_id") != key["blind_id"]:
        raise LandscapeError(f"answers: they belong to blind test {answers.get('blind_id')!r}, "
                             f"the key to {key['blind_id']!r}")
    ids, truth, said, conf = [], [], [], []
    for card in key["cards"]:
        a = answers["answers"].get(card["id"]) or {}
        if a.get("label") not in LABELS:
            continue
        c = a.get("confidence")
        c = int(c) if isinstance(c, (int, float)) and 1 <= c <= 5 else 3
        ids.append(card["id"])
        truth.append(card["truth"] == "learned")
        said.append(a["label"] == "learned")
        conf.append(c)
    if not ids:
        raise LandscapeError("answers: no card is answered")
    truth, said, conf = np.array(truth), np.array(said), np.array(conf)
    score = np.where(said, conf, -conf)  # how sure the card is "learned"
    correct = int((truth == said).sum())
    lo, hi = bootstrap_auroc(truth, score, n_boot, seed)
    first = key["sources"]["A"]
    ds = xr.Dataset(
        {"truth": ("card", truth.astype("int8")), "answer": ("card", said.astype("int8")),
         "confidence": ("card", conf), "blind_accuracy": correct / len(ids),
         "blind_auroc": auroc(truth, score), "auroc_low": lo, "auroc_high": hi,
         "p_binomial": binomtest(correct, len(ids), 0.5, alternative="greater").pvalue},
        coords={"card": ids})
    bias = first.get("bias_scale")
    ds.attrs = {"kind": "blind", "observer": str(answers.get("observer", "anonymous")),
                "blind_id": key["blind_id"], "cards_total": len(key["cards"]),
                "model": str(first.get("model")), "init": str(first.get("init")),
                "bias_scale": bias if bias is not None else "default",
                "seed": int(key.get("seed", 0)), "state": "blind",
                "sources": json.dumps(key["sources"]), "n_boot": n_boot, "bootstrap_seed": seed,
                "config": json.dumps({"n_boot": n_boot, "seed": seed})}
    return ds


def score_lines(ds: xr.Dataset) -> list[str]:
    return [f"observer {ds.attrs['observer']}: {ds.sizes['card']} of {ds.attrs['cards_total']} "
            "cards answered",
            f"accuracy {float(ds.blind_accuracy):.3f}",
            f"AUROC {float(ds.blind_auroc):.3f} (bootstrap 95 % interval "
            f"{float(ds.auroc_low):.3f} – {float(ds.auroc_high):.3f})",
            f"binomial p against chance (one-sided) {float(ds.p_binomial):.3g}"]


# ----------------------------------------------------------------------------- observer

def label_purity(labels: np.ndarray) -> float:
    """Fraction of the top examples that share their most common label."""
    labels = np.asarray(labels).ravel()
    return float(np.bincount(labels).max() / len(labels))


def _labels_of(source: dict):
    """The labels of the samples a maxact result searched, from its recorded
    dataset options (no analysis is run)."""
    from ..data import load_dataset
    from ..results import config_of

    ds = load(source["file"], kind="maxact")
    cfg = config_of(ds)
    _, y = load_dataset(cfg.get("dataset", ds.attrs.get("dataset")), root=cfg.get("data_root"),
                        n=cfg.get("samples"), split=cfg.get("split", "train"),
                        seed=cfg.get("seed", 0))
    if y is None or y.dim() != 1:
        raise LandscapeError(f"observer: {source['file']!r}'s dataset has no class labels")
    return ds, y.numpy()


def purity_observer(key: dict) -> dict:
    """Answers of the scripted observer: "learned" when a card's top examples
    are purer in label than the median card, confidence growing with the
    distance from that median (1–5)."""
    purity = {}
    cache = {tag: _labels_of(src) for tag, src in key["sources"].items()}
    for card in key["cards"]:
        ds, y = cache[card["source"]]
        purity[card["id"]] = label_purity(y[ds.topk_index.sel(unit=card["unit"]).values])
    values = np.array(list(purity.values()))
    median, spread = float(np.median(values)), float(np.ptp(values)) or 1.0
    answers = {}
    for cid, p in purity.items():
        label = "learned" if p > median else "random"
        conf = int(np.clip(1 + round(4 * abs(p - median) / spread * 2), 1, 5))
        answers[cid] = {"label": label, "confidence": conf, "purity": p}
    return {"blind_id": key["blind_id"], "observer": "label-purity", "answers": answers}

