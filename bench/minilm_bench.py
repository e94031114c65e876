"""MiniLM (``--model minilm``): tokens per second of activation extraction and of
SAE training on one of its layers, on the CPU or a GPU.

Extraction: :func:`landscape.sae.layer_vectors` (the forward pass stops at the
layer), the residual streams of a layer set ``--layers`` kept from one pass
(:meth:`~landscape.models.minilm.MiniLM.hidden_states`, as ``experiments/q7_minilm.py``
caches them), and the full forward pass to the sentence embedding, on
``--samples`` windows of ``--context`` WordPiece tokens of ``english``.  SAE training:
:func:`landscape.train_sae` on those activation vectors (expansion, k and batch
size as given) for ``--epochs`` passes.  Wall time of each loop after one warm-up
batch, and the process's CPU time beside it.

    python bench/minilm_bench.py --layer 3 --layers 1,3,6 --samples 256
    python bench/minilm_bench.py --smoke
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> dict:
    import landscape
    from landscape.models import resolve_layer
    from landscape.sae import layer_vectors

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", default="3")
    p.add_argument("--layers", default="1,3,6",
                   help="Layer set (hidden-state indices) kept from one forward pass.")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64, help="Windows per forward pass.")
    p.add_argument("--expansion", type=int, default=16)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--sae-batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--smoke", action="store_true", help="Tiny sizes: the code paths only.")
    args = p.parse_args(argv)
    if args.smoke:
        args.samples, args.context, args.expansion, args.sae_batch = 4, 16, 1, 16
    device = torch.device(args.device)
    model = landscape.build_model("minilm", context=args.context).to(device)
    x, _ = landscape.load_dataset("english", n=args.samples, seed=0, in_shape=model.in_shape,
                                  tokenizer=model.tokenizer)
    x = x.to(device)
    layer = resolve_layer(model, args.layer)
    tokens = x.numel()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    layer_vectors(model, layer, x[:args.batch_size], batch_size=args.batch_size)  # warm-up

    def extract():
        out = layer_vectors(model, layer, x, batch_size=args.batch_size)[0]
        sync()
        return out

    def forward():
        with torch.no_grad():
            for b in range(0, len(x), args.batch_size):
                model(x[b:b + args.batch_size])
        sync()

    keep = [int(i) for i in args.layers.split(",")]

    def extract_set():
        out = {i: [] for i in keep}
        with torch.no_grad():
            for b in range(0, len(x), args.batch_size):
                states = model.hidden_states(x[b:b + args.batch_size])
                for i in keep:
                    out[i].append(states[i].reshape(-1, states[i].shape[-1]).float().cpu())
        sync()
        return {i: torch.cat(v) for i, v in out.items()}

    load = os.getloadavg()
    vectors, w1, c1 = timed(extract)
    sets, w4, c4 = timed(extract_set)
    _, w2, c2 = timed(forward)
    sae_kw = dict(expansion=args.expansion, k=args.k, batch_size=args.sae_batch, device=device)
    landscape.train_sae(vectors[:args.sae_batch], epochs=1, **sae_kw)  # warm-up
    _, w3, c3 = timed(lambda: (landscape.train_sae(vectors, epochs=args.epochs, **sae_kw), sync()))
    sae_tokens = len(vectors) * args.epochs
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.samples} windows x "
          f"{args.context} tokens = {tokens} tokens, layer {layer}, load average before "
          f"{load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    rows = [(f"extraction to {layer}", tokens, w1, c1),
            (f"extraction of layers {args.layers} (one pass)", tokens, w4, c4),
            ("full forward (sentence embedding)", tokens, w2, c2),
            (f"SAE training ({384 * args.expansion} latents, k {args.k}, batch {args.sae_batch})",
             sae_tokens, w3, c3)]
    print("| what | tokens | wall (s) | CPU (s) | tokens/s (wall) | tokens per CPU second |")
    print("|---|---:|---:|---:|---:|---:|")
    for what, n, w, c in rows:
        print(f"| {what} | {n} | {w:.2f} | {c:.2f} | {n / w:.0f} | {n / max(c, 1e-9):.0f} |")
    return {"rows": rows, "vectors": len(vectors), "sets": {i: tuple(v.shape) for i, v in sets.items()}}


if __name__ == "__main__":
    main()
