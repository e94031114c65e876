"""Benchmark: openTSNE (Barnes-Hut and FFT gradients, what landscape.embedding
uses) against scikit-learn's TSNE (Barnes-Hut) on the same 5 000-point input, in
one process; then the cost of one more unit's heatmap once the map exists.

Input: scikit-learn's 1 797 digits (8x8, standardised as ``landscape.load_dataset``
does), each repeated with a random shift of up to one pixel and N(0, 0.1²) pixel
noise until 5 000 images, reduced by PCA to 50 dimensions (as
``landscape.embedding`` does).  Both t-SNEs: perplexity 30, 250 early-exaggeration
+ 500 further iterations, PCA initialisation, ``n_jobs`` threads, seed 0.

Usage::

    python bench/tsne_bench.py --n 5000 --threads 2
"""

from __future__ import annotations

import argparse
import inspect
import time

import numpy as np
import torch


def digits_augmented(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    import landscape

    x, y = landscape.load_dataset("digits", in_shape=(1, 8, 8), split="train", seed=seed)
    x2, y2 = landscape.load_dataset("digits", in_shape=(1, 8, 8), split="test", seed=seed)
    x, y = torch.cat([x, x2]).numpy(), torch.cat([y, y2]).numpy()
    rng = np.random.default_rng(seed)
    images, labels = [x], [y]
    while sum(len(i) for i in images) < n:
        shift = rng.integers(-1, 2, size=2)
        moved = np.roll(x, shift=tuple(shift), axis=(2, 3))
        images.append(moved + rng.normal(0, 0.1, size=x.shape).astype(np.float32))
        labels.append(y)
    return np.concatenate(images)[:n], np.concatenate(labels)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and t-SNE threads (default: the cores this process may use)")
    parser.add_argument("--perplexity", type=float, default=30.0)
    args = parser.parse_args()
    from landscape.memory import use_threads

    args.threads = use_threads(args.threads)

    import landscape
    from landscape import embedding

    images, labels = digits_augmented(args.n)
    feats = images.reshape(len(images), -1).astype(np.float64)
    from sklearn.decomposition import PCA

    reduced = PCA(n_components=50, random_state=0, svd_solver="full").fit_transform(feats)
    print(f"input: {len(reduced)} points, PCA-50 of digits-augmented 8x8 images")

    from openTSNE import TSNE as OpenTSNE
    from sklearn.manifold import TSNE as SkTSNE

    t_open, kl_open = {}, {}
    for method in ("bh", "fft"):
        t0 = time.perf_counter()
        emb = OpenTSNE(perplexity=args.perplexity, n_iter=500, early_exaggeration_iter=250,
                       negative_gradient_method=method, initialization="pca", random_state=0,
                       n_jobs=args.threads).fit(reduced)
        t_open[method], kl_open[method] = time.perf_counter() - t0, emb.kl_divergence
    iters = "max_iter" if "max_iter" in inspect.signature(SkTSNE).parameters else "n_iter"
    t0 = time.perf_counter()
    sk = SkTSNE(perplexity=args.perplexity, init="pca", random_state=0, n_jobs=args.threads,
                method="barnes_hut", **{iters: 750})
    sk.fit_transform(reduced)
    t_sk = time.perf_counter() - t0
    print(f"sklearn barnes_hut: {t_sk:.2f} s (KL {sk.kl_divergence_:.3f})")
    for method in t_open:
        print(f"openTSNE {method}: {t_open[method]:.2f} s (KL {kl_open[method]:.3f}); "
              f"ratio sklearn/openTSNE {t_sk / t_open[method]:.2f}")
    print(f"landscape's 'auto' picks {embedding.gradient_method('auto', len(reduced))} "
          f"for {len(reduced)} points")

    # Heatmaps: the first call fits the map, later units only recolour it.
    model = landscape.build_model("mlp", init="xavier", seed=0, width=64, depth=2)
    x, y = torch.as_tensor(images), torch.as_tensor(labels)
    embedding.clear_cache()
    t0 = time.perf_counter()
    first = landscape_tsne(model, [0], x, y)
    t_first = time.perf_counter() - t0
    times = []
    for unit in range(1, 6):
        t0 = time.perf_counter()
        landscape_tsne(model, [unit], x, y)
        times.append(time.perf_counter() - t0)
    t_more = float(np.median(times))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 3))
    t0 = time.perf_counter()
    ax.scatter(first.tsne_x, first.tsne_y, c=first.activation.isel(unit=0), s=3)
    fig.canvas.draw()
    t_draw = time.perf_counter() - t0
    plt.close(fig)
    print(f"tsne_heatmaps first unit (PCA + fit): {t_first:.2f} s; one more unit (cached map, "
          f"median of 5): {1000 * t_more:.1f} ms; drawing one heatmap panel: "
          f"{1000 * t_draw:.1f} ms; fit / recolour {t_first / t_more:.0f}x")


def landscape_tsne(model, units, x, y):
    from landscape.embedding import tsne_heatmaps

    return tsne_heatmaps(model, None, units, x, y, perplexity=30.0, seed=0, n_jobs=2)


if __name__ == "__main__":
    main()
