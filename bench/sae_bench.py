"""TopK SAE training: landscape's trainer against EleutherAI's sparsify
(PyPI ``eai-sparsify``, the trainer Heap et al. 2025 used), on the same cached
activations with the same expansion, k, batch size and number of tokens.

sparsify's ``Trainer`` draws activations from a Hugging Face model as it runs;
to feed both trainers the same cached activations, this bench drives sparsify's
own pieces the way ``Trainer.fit`` does with ``loss_fn="fvu"``: its
``SparseCoder`` (fused TopK encoder, sparse decoder, FVU and AuxK losses), the
decoder bias set to the first batch's mean, decoder rows renormalised before
and gradients projected before every step, and its optimisers with its default
learning rates: ``signum`` (SignSGD in a schedule-free wrapper, momentum 0.95,
lr 5e-3 / sqrt(M / 2^14), sparsify's default) and ``adam`` (lr
2e-4 / sqrt(M / 2^14), 1000 warm-up steps, linear decay).

Both are scored by one function on held-out activations: FVU (variance about
the mean), the share of latents never active, and training tokens per second
(wall time of the training loop only, after a warm-up call of each).

    python bench/sae_bench.py --model transformer --checkpoint ckpt.pt --dataset pysource \
        --layer blocks.1 --samples 2048
    python bench/sae_bench.py --smoke      # tiny and fast: the code paths, for the tests
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def activations(args) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Training and held-out activation vectors of the chosen model's layer."""
    import landscape
    from landscape.models import load_checkpoint, resolve_layer
    from landscape.sae import layer_vectors

    options = {k: v for k, v in (("width", args.width),) if v is not None}
    model = landscape.build_model(args.model, seed=args.seed, in_shape=args.in_shape, **options)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    x, _ = landscape.load_dataset(args.dataset, n=args.samples, seed=args.seed,
                                  in_shape=model.in_shape)
    layer = resolve_layer(model, args.layer)
    cut = int(0.8 * len(x))
    train, _ = layer_vectors(model, layer, x[:cut])
    held, _ = layer_vectors(model, layer, x[cut:])
    return train, held, f"{args.model} {layer} on {args.dataset}"


def score(encode_decode, held: torch.Tensor, n_latents: int, batch: int = 4096) -> tuple[float, float]:
    """FVU about the mean and the share of latents never active, on ``held``."""
    err, fired = 0.0, torch.zeros(n_latents, dtype=torch.bool)
    with torch.no_grad():
        for begin in range(0, len(held), batch):
            x = held[begin:begin + batch]
            x_hat, idx, vals = encode_decode(x)
            err += float((x - x_hat).double().pow(2).sum())
            fired[idx[vals > 0]] = True
    variance = float((held.double() - held.double().mean(0)).pow(2).sum())
    return err / variance, float((~fired).float().mean())


def run_landscape(train, held, args, aux_k=None):
    from landscape.sae import train_sae

    options = dict(expansion=args.expansion, k=args.k, epochs=args.epochs,
                   batch_size=args.batch_size, seed=args.seed, lr=args.lr, aux_k=aux_k)
    train_sae(train[:2 * args.batch_size], **{**options, "epochs": 1})  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    sae = train_sae(train, **options)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu

    def encode_decode(x):
        vals, idx = sae.encode_sparse(x)
        return sae.decode_sparse(vals, idx), idx, vals

    tokens = len(train) * args.epochs
    return (*score(encode_decode, held, sae.n_latents), tokens / seconds, tokens / cpu)


def run_sparsify(train, held, args, optimizer: str):
    from sparsify import SparseCoder, SparseCoderConfig

    d = train.shape[1]

    def fit(data: torch.Tensor, epochs: int):
        torch.manual_seed(args.seed)
        sae = SparseCoder(d, SparseCoderConfig(expansion_factor=args.expansion, k=args.k),
                          device="cpu", dtype=torch.float32)
        steps = math.ceil(len(data) / args.batch_size) * epochs
        scale = (sae.num_latents / 2**14) ** 0.5
        schedulers = []
        if optimizer == "signum":
            from schedulefree import ScheduleFreeWrapper
            from sparsify.sign_sgd import SignSGD

            opt = ScheduleFreeWrapper(SignSGD([{"params": sae.parameters(),
                                                "lr": args.lr or 5e-3 / scale}]), momentum=0.95)
            opt.train()
        else:
            from transformers import get_linear_schedule_with_warmup

            opt = torch.optim.Adam(sae.parameters(), lr=args.lr or 2e-4 / scale)
            schedulers.append(get_linear_schedule_with_warmup(opt, 1000, steps))
        gen = torch.Generator().manual_seed(args.seed)
        first = True
        for _ in range(epochs):
            order = torch.randperm(len(data), generator=gen)
            for begin in range(0, len(data), args.batch_size):
                x = data[order[begin:begin + args.batch_size]]
                if first:  # Trainer.fit: centre the pre-activations on the first batch
                    sae.b_dec.data = x.mean(0)
                    first = False
                sae.set_decoder_norm_to_unit_norm()
                out = sae(x, dead_mask=None)
                out.fvu.backward()
                sae.remove_gradient_parallel_to_decoder_directions()
                opt.step()
                opt.zero_grad()
                for s in schedulers:
                    s.step()
        if optimizer == "signum":
            opt.eval()  # schedule-free: evaluate at the averaged weights, as sparsify saves them
        return sae

    fit(train[:2 * args.batch_size], 1)  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    sae = fit(train, args.epochs)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu

    def encode_decode(x):
        vals, idx, _ = sae.encode(x)
        return sae.decode(vals, idx), idx, vals

    tokens = len(train) * args.epochs
    return (*score(encode_decode, held, sae.num_latents), tokens / seconds, tokens / cpu)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--layer", default=None)
    parser.add_argument("--in-shape", default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None, help="Inputs (default: all).")
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=None, help="Both trainers (default: each its own).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-sparsify", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each trainer (interleaved).")
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes: the code paths only.")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.in_shape, args.width, args.samples = "cnn", "1x8x8", 4, 40
        args.layer, args.expansion, args.k, args.batch_size = "act2", 2, 2, 64
        args.repeats = 1
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    train, held, what = activations(args)
    print(f"{what}: {len(train)} training and {len(held)} held-out activations of {train.shape[1]}; "
          f"expansion {args.expansion}, k {args.k}, batch {args.batch_size}, epochs {args.epochs}, "
          f"{threads} threads, torch {torch.__version__}")
    trainers = [("landscape (Adam, AuxK)", lambda: run_landscape(train, held, args)),
                ("landscape (Adam, no AuxK)", lambda: run_landscape(train, held, args, aux_k=0))]
    if not args.no_sparsify:
        if not torch.cuda.is_available():
            # sparsify imports its Triton decoder when Triton is installed, and Triton
            # fails at import without a GPU driver: hide it, so sparsify takes its
            # own eager decoder (embedding_bag), as it does where Triton is absent.
            sys.modules.setdefault("triton", None)
        try:
            import sparsify  # noqa: F401
        except ImportError as exc:
            print(f"sparsify not available ({exc}); pip install eai-sparsify")
        else:
            for optimizer in ("signum", "adam"):
                trainers.append((f"sparsify ({optimizer})",
                                 lambda o=optimizer: run_sparsify(train, held, args, o)))
    # Repeats interleave the trainers, so a busy machine slows each of them alike;
    # the median rate is reported (FVU and dead share are the same every time).
    results = {name: [] for name, _ in trainers}
    for _ in range(args.repeats):
        for name, fit in trainers:
            results[name].append(fit())
    # Tokens per CPU-second (process time) is the cost that a busy machine does not
    # change as much as the wall clock; with one thread it is the work of that thread.
    print(f"{'trainer':26s} {'FVU':>8s} {'dead':>7s} {'tokens/s':>10s} {'tokens/CPU-s':>13s}"
          f"  (medians of {args.repeats})")
    for name, runs in results.items():
        f, dead = runs[0][:2]
        rate = sorted(r[2] for r in runs)[len(runs) // 2]
        cpu_rate = sorted(r[3] for r in runs)[len(runs) // 2]
        print(f"{name:26s} {f:8.4f} {dead:7.3f} {rate:10.0f} {cpu_rate:13.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
