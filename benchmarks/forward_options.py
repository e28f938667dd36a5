"""Each speed idea for the masked passes, measured alone: per-image time of one batched forward pass.

    PYTHONPATH=lib python benchmarks/forward_options.py --models resnet18 resnet50 --threads 1 --clock cpu

The masked passes are nearly all of Score-CAM's time (score_speed.py measures the rest at a few per
cent), so an idea pays exactly when it makes this forward pass faster. Variants, each on ``--batch-size``
masked-like inputs: the model as given under ``torch.no_grad`` and under ``torch.inference_mode``;
channels-last inputs only; channels-last inputs and parameters (a converted copy); BatchNorm folded into
the convolutions (a copy), in NCHW and channels-last; and ``torch.autocast`` in bfloat16 / float16
(GPU: in float16 too). Repeats are interleaved in a rotating order; the table gives medians.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from contextlib import nullcontext

import torch
import torchvision

from gradscorecam.explainers.speed import fuse_batchnorm


def variants(model: torch.nn.Module, device: torch.device, include_autocast: bool) -> dict[str, tuple]:
    """name -> (model, channels_last input, grad context factory, autocast dtype)."""
    fused = fuse_batchnorm(model)
    cl_copy = copy.deepcopy(model).to(memory_format=torch.channels_last)
    out = {
        "NCHW, no_grad": (model, False, torch.no_grad, None),
        "NCHW, inference_mode": (model, False, torch.inference_mode, None),
        "channels-last input": (model, True, torch.inference_mode, None),
        "channels-last input + parameters": (cl_copy, True, torch.inference_mode, None),
        "folded BN, NCHW": (fused, False, torch.inference_mode, None),
        "folded BN, channels-last (our default)": (
            fused.to(memory_format=torch.channels_last),
            True,
            torch.inference_mode,
            None,
        ),
    }
    if include_autocast:
        fused_cl = out["folded BN, channels-last (our default)"][0]
        out["default + autocast bf16"] = (fused_cl, True, torch.inference_mode, torch.bfloat16)
        out["default + autocast fp16"] = (fused_cl, True, torch.inference_mode, torch.float16)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=3, help="forward passes per timing")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--no-autocast", dest="autocast", action="store_false")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"torch {torch.__version__}, {args.threads} threads, {args.device}, {args.clock} clock, "
          f"batch {args.batch_size}, load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    for name in args.models:
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, weights=None).eval().to(device)
        for p_ in model.parameters():
            p_.requires_grad_(False)
        generator = torch.Generator().manual_seed(1)
        image = torch.randn(1, 3, args.size, args.size, generator=generator)
        batch = (image * torch.rand(args.batch_size, 1, args.size, args.size, generator=generator)).to(device)
        found = variants(model, device, args.autocast)
        inputs = {False: batch, True: batch.contiguous(memory_format=torch.channels_last)}
        times: dict[str, list[float]] = {key: [] for key in found}
        keys = list(found)
        for rep in range(args.repeats + 1):  # the first round warms up
            for key in keys[rep % len(keys) :] + keys[: rep % len(keys)]:
                net, cl, grad_mode, dtype = found[key]
                amp = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = clock()
                with grad_mode(), amp:
                    for _ in range(args.batches):
                        net(inputs[cl])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if rep:
                    times[key].append((clock() - start) / args.batches / args.batch_size)
        base = statistics.median(times["NCHW, inference_mode"])
        print(f"\n**{name}**, {args.size}x{args.size}: seconds per image, median of {args.repeats}\n")
        print("| variant | s / image | speed-up vs NCHW |\n| --- | ---: | ---: |")
        for key, values in times.items():
            med = statistics.median(values)
            print(f"| {key} | {med:.4f} | {base / med:.2f}x |")
    print(f"\nload average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
