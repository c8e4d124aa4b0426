#!/usr/bin/python3
"""PyTorch's CPU speed on this machine, as the yardstick for clgrad's numbers: training-step
throughput of the catalogue's models (tools/clgrad_torch.py) at batch 64, and conv2d
forward / forward+backward (dx, dw; no bias) GFLOP/s on clgrad-bench conv's three shapes.
Medians of timed runs after warm-up, 2 threads. Pair: tools/clgrad-bench (C), which runs this
script (train: --train-only, conv: --conv-only). Run: /usr/bin/python3 tools/torch_baseline.py [--json]
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clgrad_torch import MODELS, make_optimizer  # noqa: E402

# (name, N, C, H, W, K, kernel, pad), stride 1: clgrad-bench conv's shapes in its order
# (conv_shapes in tools/bench/conv.c, which matches rows by these numbers, not by index)
CONV_SHAPES = [
    ("n64_c1_28_k32", 64, 1, 28, 28, 32, 3, 1),
    ("n64_c32_32_k64", 64, 32, 32, 32, 64, 3, 1),
    ("n32_c64_56_k64", 32, 64, 56, 56, 64, 3, 1),
]


def median_time(fn, warmup, reps, budget_s):
    """Median seconds of fn() over up to reps runs, stopping early once budget_s is spent."""
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start > budget_s:
            break
    return statistics.median(times), len(times)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train_step_rate(name, batch, args):
    rss0 = peak_rss_mib()
    torch.manual_seed(0)
    model = MODELS[name]()
    model.train()
    opt = make_optimizer(name, model.parameters())
    x = torch.rand(batch, *model.input_shape)
    y = torch.randint(0, model.classes, (batch,))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    t, n = median_time(step, args.warmup, args.reps, args.budget)
    # growth of the process's peak RSS over this model's steps (0 when an earlier model peaked higher)
    return {"model": name, "batch": batch, "step_ms": t * 1e3, "images_per_s": batch / t,
            "timed_steps": n, "peak_rss_growth_mib": peak_rss_mib() - rss0}


def conv_backend(x, wt, pad):
    """The route torch picks for this conv2d (Mkldnn = oneDNN), or None if it cannot say."""
    try:
        return str(torch._C._select_conv_backend(x, wt, None, [1, 1], [pad, pad], [1, 1], False,
                                                 [0, 0], 1)).split(".")[-1]
    except (AttributeError, RuntimeError, TypeError):
        return None


def conv_rate(shape, args):
    # The work of clgrad-bench conv's clgrad rows (tools/bench/conv.c): no bias; forward = y;
    # forward+backward = y, then dx and dw from a fixed dy (no db).
    name, n, c, h, w, k, ks, pad = shape
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, requires_grad=True)
    wt = torch.randn(k, c, ks, ks, requires_grad=True)
    oh, ow = h + 2 * pad - ks + 1, w + 2 * pad - ks + 1
    dy = torch.randn(n, k, oh, ow)
    # Multiply-adds counted as 2 FLOPs; backward computes dW and dX, each as many as forward.
    fwd_flops = 2.0 * n * k * c * ks * ks * oh * ow

    def fwd():
        with torch.no_grad():
            F.conv2d(x, wt, None, padding=pad)

    def fwd_bwd():
        x.grad = wt.grad = None
        F.conv2d(x, wt, None, padding=pad).backward(dy)

    tf, _ = median_time(fwd, args.warmup, args.reps, args.budget)
    tb, _ = median_time(fwd_bwd, args.warmup, args.reps, args.budget)
    return {"shape": name, "N": n, "C": c, "H": h, "W": w, "K": k, "kernel": ks, "pad": pad,
            "backend": conv_backend(x, wt, pad),
            "fwd_ms": tf * 1e3, "fwd_gflops": fwd_flops / tf / 1e9,
            "fwd_bwd_ms": tb * 1e3, "fwd_bwd_gflops": 3 * fwd_flops / tb / 1e9}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--budget", type=float, default=4.0, help="seconds per measurement, roughly")
    ap.add_argument("--train-only", action="store_true", help="skip the conv2d shapes")
    ap.add_argument("--conv-only", action="store_true", help="skip the training steps")
    ap.add_argument("--conv-shape", type=int, choices=range(len(CONV_SHAPES)),
                    help="only this conv2d shape (index into CONV_SHAPES, as clgrad-bench conv --shape)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    res = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "mkldnn": torch.backends.mkldnn.is_available(),
           "train": [] if args.conv_only else [train_step_rate(m, args.batch, args) for m in MODELS],
           "conv2d": [] if args.train_only else
           [conv_rate(s, args) for i, s in enumerate(CONV_SHAPES)
            if args.conv_shape is None or i == args.conv_shape]}
    res["wall_s"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"torch {res['torch']}, {res['threads']} threads, mkldnn {res['mkldnn']}")
    if res["train"]:
        print(f"{'model':8} {'batch':>5} {'step ms':>9} {'images/s':>9}")
    for r in res["train"]:
        print(f"{r['model']:8} {r['batch']:5d} {r['step_ms']:9.2f} {r['images_per_s']:9.1f}")
    if res["conv2d"]:
        print(f"{'conv2d (k3 p1)':18} {'fwd ms':>8} {'GFLOP/s':>8} {'fwd+bwd ms':>11} {'GFLOP/s':>8}")
    for r in res["conv2d"]:
        print(f"{r['shape']:18} {r['fwd_ms']:8.2f} {r['fwd_gflops']:8.2f} "
              f"{r['fwd_bwd_ms']:11.2f} {r['fwd_bwd_gflops']:8.2f}")
    print(f"(fwd+bwd = forward, dW and dX, no bias: 3x the forward FLOPs; wall {res['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
