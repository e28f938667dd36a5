"""Seconds per image of our explainers against pytorch-grad-cam and torchcam, with the forward-pass floor.

    PYTHONPATH=lib python benchmarks/score_speed.py                      # resnet18 + resnet50, CPU, 224x224
    PYTHONPATH=lib python benchmarks/score_speed.py --models resnet18 --repeats 5
    PYTHONPATH=lib python benchmarks/score_speed.py --device cuda --autocast bf16

What is timed, and why it is fair (docs/speed.md):

* every library gets the same model (random weights: timing only), the same input, device, thread count
  (``torch.set_num_threads``, also OpenCV's, which pytorch-grad-cam resizes with) and chunk size
  (ours ``batch_size=``, pytorch-grad-cam ``cam.batch_size``, torchcam ``batch_size=``); pytorch-grad-cam's
  per-chunk tqdm bar is silenced (ours and torchcam print nothing);
* a call is timed whole, from building the explainer (hooks) to the final map, as a user would run it;
* the contestants of a repeat run interleaved, in an order rotated every repeat, and the table gives the
  median over repeats, so slow drifts of a shared machine hit every library alike;
* before any time counts, the maps are compared like with like (same method, same reading): channel
  weights within 1e-4 of the largest, and maps within the tolerance the post-processing allows. A
  mismatch is printed and makes the command fail: a faster wrong answer cannot win.

The floor of an exact Score-CAM is K masked forward passes at the model's best batched throughput:
``floor = K x t(batch) / batch`` with t the median time of one forward pass of ``--batch-size`` images,
taken for the model as given (NCHW), with channels-last inputs, and for our BatchNorm-folded
channels-last copy; the best of the three is the floor. Peak resident memory (RSS) of one Score-CAM call
is measured in a fresh subprocess per library.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision

from gradscorecam import CAM, GradCAM, GradCAMPlusPlus, GradPlusPlusScoreCAM, ScoreCAM, SmoothGradCAMPlusPlus
from gradscorecam.explainers.speed import FusedModelCache
from gradscorecam.torchutils import synchronize

LAYERS = {"resnet18": "layer4", "resnet50": "layer4", "vgg16": "features.29", "alexnet": "features.11"}
WEIGHT_TOLERANCE = 1e-4  # relative to the largest weight: same method, same numbers up to float rounding
# pytorch-grad-cam min-max normalises at the feature resolution and then resizes with OpenCV; we resize,
# then normalise. Same weights, so the maps differ only by that order: a few hundredths at most.
PGC_MAP_TOLERANCE = 0.1
TORCHCAM_MAP_TOLERANCE = 1e-4  # compared at the feature resolution, where both normalise the same way


@dataclass
class Output:
    """What a timed call returns, for the agreement checks."""

    weights: np.ndarray | None  # (B, K) channel weights
    maps: np.ndarray  # (B, H, W) at input resolution, or (B, h, w) when ``feature_res``
    feature_res: bool = False
    scored: int | None = None  # masked forward passes made (our score-based methods)
    feature_maps: np.ndarray | None = None  # ours: (B, h, w) ReLU + min-max at the feature resolution


@dataclass
class Contestant:
    row: str  # the table row (method and reading)
    library: str  # "ours", "pytorch-grad-cam", "torchcam", "ours (plain)", or "forward" for the floor
    run: Callable[[], Output | None]
    inner: int = 1  # calls per timing (cheap methods: several, for a stable mean)
    times: list[float] = field(default_factory=list)  # the clock the table uses
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    output: Output | None = None


# ------------------------------------------------------------------------------------------ contestants
def ours(cls, model, layer, images, targets, **options) -> Callable[[], Output]:
    """A call as ``explainer(images, targets)`` makes it (explain, then post-process to the input size)."""

    def run() -> Output:
        explanation = cls(model, layer, **options).explain(images, targets)
        saliency = explanation.saliency(tuple(images.shape[-2:]))
        scored = explanation.details.get("scored")
        return Output(
            explanation.weights.cpu().numpy(),
            saliency.cpu().numpy(),
            scored=None if scored is None else int(scored.sum()),
            feature_maps=explanation.saliency(None).cpu().numpy(),  # untimed in effect: a 7x7 min-max
        )

    return run


def pytorch_grad_cam(name: str, model, layer_module, images, targets, batch_size: int) -> Callable[[], Output]:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"ScoreCAM": pgc.ScoreCAM, "GradCAM": pgc.GradCAM, "GradCAMPlusPlus": pgc.GradCAMPlusPlus}[name]

    def run() -> Output:
        recorded: list[np.ndarray] = []
        with cls(model=model, target_layers=[layer_module]) as cam:
            cam.batch_size = batch_size
            get_weights = cam.get_cam_weights
            cam.get_cam_weights = lambda *a, **k: recorded.append(get_weights(*a, **k)) or recorded[-1]
            maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(t) for t in targets])
        model.zero_grad(set_to_none=True)  # its gradient methods fill every parameter's .grad
        return Output(np.asarray(recorded[0]), maps)

    return run


def torchcam(name: str, model, layer: str, images, targets, batch_size: int) -> Callable[[], Output]:
    import torchcam.methods as tc

    def run() -> Output:
        recorded: list[list[torch.Tensor]] = []
        options = {"batch_size": batch_size} if name == "ScoreCAM" else {}
        with getattr(tc, name)(model, layer, input_shape=tuple(images.shape[1:]), **options) as extractor:
            get_weights = extractor._get_weights
            extractor._get_weights = lambda *a, **k: recorded.append(get_weights(*a, **k)) or recorded[-1]
            if name == "ScoreCAM" or name == "CAM":
                with torch.inference_mode():
                    scores = model(images)
                (maps,) = extractor(class_idx=targets)
            else:
                scores = model(images)
                (maps,) = extractor(class_idx=targets, scores=scores)
        model.zero_grad(set_to_none=True)
        weights = recorded[0][0]
        weights = weights.expand(len(targets), -1) if weights.shape[0] == 1 else weights
        return Output(weights.detach().cpu().numpy(), maps.detach().cpu().numpy(), True)

    return run


def forward_batch(model, images: torch.Tensor, batch_size: int, channels_last: bool, fused: bool, autocast):
    """One forward pass of ``batch_size`` masked-like inputs: the unit of the floor."""
    if fused:
        model = FusedModelCache().get(model.eval(), channels_last=channels_last) or model
    batch = images[:1].expand(batch_size, -1, -1, -1) * torch.rand(
        batch_size, 1, *images.shape[-2:], device=images.device, generator=None
    )
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        ctx = torch.autocast(images.device.type, dtype=autocast) if autocast else nullcontext()
        with torch.inference_mode(), ctx:
            model(batch)

    return run


# -------------------------------------------------------------------------------------------- agreement
def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def agreement(mine: Output, theirs: Output, map_tolerance: float) -> tuple[bool, str]:
    """Like-for-like check of two outputs: weights within WEIGHT_TOLERANCE, maps within ``map_tolerance``."""
    notes, ok = [], True
    if mine.weights is not None and theirs.weights is not None:
        rel = _relative(mine.weights, theirs.weights)
        ok &= rel < WEIGHT_TOLERANCE
        notes.append(f"weights {rel:.0e}")
    maps = mine.feature_maps if theirs.feature_res else mine.maps  # torchcam's maps stay at the feature resolution
    if maps is None or maps.shape != theirs.maps.shape:
        return False, f"map shapes {None if maps is None else maps.shape} vs {theirs.maps.shape}"
    diff = float(np.abs(maps - theirs.maps).max())
    ok &= diff <= map_tolerance
    notes.append(f"maps {diff:.0e}")
    return ok, ", ".join(notes)


# ------------------------------------------------------------------------------------------------ model
def build(args: argparse.Namespace, name: str) -> tuple[torch.nn.Module, str, torch.Tensor, list[int]]:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval().to(args.device)
    images = torch.randn(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    images = images.to(args.device)
    with torch.inference_mode():
        targets = model(images).argmax(1).tolist()
    return model, LAYERS[name], images, targets


def contestants(args, model, layer: str, images, targets) -> list[Contestant]:
    bs, speed = args.batch_size, {"autocast": args.autocast}
    plain = {"channels_last": False, "fuse_batchnorm": False, "cudnn_benchmark": False}
    module = dict(model.named_modules())[layer]
    wanted = set(args.methods)
    rows: list[Contestant] = []

    def add(row: str, library: str, run, inner: int = 1) -> None:
        rows.append(Contestant(row, library, run, inner))

    cheap = args.inner
    if "CAM" in wanted:
        add("CAM", "ours", ours(CAM, model, layer, images, targets), cheap)
        add("CAM", "torchcam", torchcam("CAM", model, layer, images, targets, bs), cheap)
    if "Grad-CAM" in wanted:
        add("Grad-CAM", "ours", ours(GradCAM, model, layer, images, targets), cheap)
        add("Grad-CAM", "pytorch-grad-cam", pytorch_grad_cam("GradCAM", model, module, images, targets, bs), cheap)
        add("Grad-CAM", "torchcam", torchcam("GradCAM", model, layer, images, targets, bs), cheap)
    if "Grad-CAM++" in wanted:  # eps=1e-6: pytorch-grad-cam's denominator; torchcam's Grad-CAM++ weights are wrong
        run = ours(GradCAMPlusPlus, model, layer, images, targets, eps=1e-6)
        add("Grad-CAM++", "ours", run, cheap)
        add(
            "Grad-CAM++",
            "pytorch-grad-cam",
            pytorch_grad_cam("GradCAMPlusPlus", model, module, images, targets, bs),
            cheap,
        )
    if "SmoothGrad-CAM++" in wanted:
        add("SmoothGrad-CAM++", "ours", ours(SmoothGradCAMPlusPlus, model, layer, images, targets), 1)
    if "Score-CAM" in wanted:
        add("Score-CAM", "ours", ours(ScoreCAM, model, layer, images, targets, batch_size=bs, **speed))
        if args.plain:
            add("Score-CAM", "ours (plain)", ours(ScoreCAM, model, layer, images, targets, batch_size=bs, **plain))
    if "Score-CAM/pytorch-grad-cam" in wanted:
        row = "Score-CAM, pytorch-grad-cam reading"
        add(
            row,
            "ours",
            ours(ScoreCAM, model, layer, images, targets, batch_size=bs, variant="pytorch-grad-cam", **speed),
        )
        add(row, "pytorch-grad-cam", pytorch_grad_cam("ScoreCAM", model, module, images, targets, bs))
    if "Score-CAM/torchcam" in wanted:
        row = "Score-CAM, torchcam reading"
        add(row, "ours", ours(ScoreCAM, model, layer, images, targets, batch_size=bs, variant="torchcam", **speed))
        add(row, "torchcam", torchcam("ScoreCAM", model, layer, images, targets, bs))
    if "Grad++ScoreCAM" in wanted:
        for budget in args.budgets:
            row = "Grad++ScoreCAM" + ("" if budget is None else f", max_channels={budget}")
            add(
                row,
                "ours",
                ours(
                    GradPlusPlusScoreCAM,
                    model,
                    layer,
                    images,
                    targets,
                    batch_size=bs,
                    max_channels="all" if budget is None else budget,
                    **speed,
                ),
            )
    if args.floor:
        # Our own forward runs as many chunks as a Score-CAM call, so both see the machine over as long a time.
        for label, cl, fused in (
            ("NCHW", False, False),
            ("channels-last input", True, False),
            ("folded BN, channels-last", True, True),
        ):
            batches = args.floor_batches or (-(-len(images) * _channels(model, layer, images) // bs) if fused else 4)
            add(
                f"forward ({label})",
                "forward",
                forward_batch(model, images, bs, cl, fused, args.autocast_dtype),
                batches,
            )
    return rows


def _channels(model, layer: str, images) -> int:
    """K, the target layer's channel count (one clean forward pass with a hook)."""
    found: list[int] = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda _m, _i, out: found.append(out.shape[1]))
    try:
        with torch.inference_mode():
            model(images[:1])
    finally:
        handle.remove()
    return found[0]


# --------------------------------------------------------------------------------------------- timing
def time_all(rows: list[Contestant], repeats: int, device: torch.device, clock: str, log) -> None:
    """Time every contestant ``repeats`` times, interleaved; ``clock`` is "wall" or "cpu" (process CPU time).

    On a machine shared with other jobs, wall time measures the neighbours as much as the code: with one
    thread, process CPU time is the time the code itself ran (it still feels shared caches and memory
    bandwidth). With several threads, CPU time also counts OpenMP threads spinning at barriers, so
    prefer wall time on a quiet machine then. Both are stored; the table uses ``clock``.
    """
    # Warm-up, untimed: lazy initialisation and oneDNN/cuDNN primitives for the chunk shape in each memory
    # format (the forward rows), and one call of every cheap method (a first call costs more than the rest).
    for c in rows:
        if c.inner > 1:
            c.output = c.run()
    for rep in range(repeats):
        order = rows[rep % len(rows) :] + rows[: rep % len(rows)]  # rotate: no library always runs first
        for c in order:
            synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(c.inner):
                out = c.run()
            synchronize(device)
            c.wall.append((time.perf_counter() - wall) / c.inner)
            c.cpu.append((time.process_time() - cpu) / c.inner)
            c.times.append(c.cpu[-1] if clock == "cpu" else c.wall[-1])
            if c.output is None and out is not None:
                c.output = out
            log(
                f"  repeat {rep + 1}/{repeats}  {c.row:<40} {c.library:<18} wall {c.wall[-1]:8.3f} s  cpu {c.cpu[-1]:8.3f} s"
            )


def table(name: str, rows: list[Contestant], n_images: int, batch_size: int, clock: str) -> tuple[str, dict, bool]:
    """Markdown table, a JSON-able summary and whether every like-for-like check passed."""
    med = {(c.row, c.library): statistics.median(c.times) / n_images for c in rows}
    by_row: dict[str, dict[str, Contestant]] = {}
    for c in rows:
        by_row.setdefault(c.row, {})[c.library] = c
    forward = {r: statistics.median(c["forward"].times) / batch_size for r, c in by_row.items() if "forward" in c}
    best_forward = min(forward.values()) if forward else None
    nchw_forward = forward.get("forward (NCHW)")
    lines = [
        f"**{name}** (seconds per image, {clock} clock, median of {len(rows[0].times)} repeats)",
        "",
        "| method | ours | pytorch-grad-cam | ours / pgc | torchcam | ours / torchcam | K passes | floor | ours / floor | maps agree |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    summary: dict[str, dict] = {
        "forward_per_image": forward,
        "raw_seconds": {f"{c.row} | {c.library}": {"wall": c.wall, "cpu": c.cpu} for c in rows},
    }
    all_ok = True
    score_cam = med.get(("Score-CAM", "ours"))
    for row, libs in by_row.items():
        if "forward" in libs:
            continue
        mine = libs.get("ours")
        entry: dict[str, object] = {lib: med[(row, lib)] for lib in libs}
        cells = [row, f"{med[(row, 'ours')]:.3f}" if mine else ""]
        checks = []
        for lib, tol in (("pytorch-grad-cam", PGC_MAP_TOLERANCE), ("torchcam", TORCHCAM_MAP_TOLERANCE)):
            if lib in libs and mine:
                ok, note = agreement(mine.output, libs[lib].output, tol)
                all_ok &= ok
                checks.append(f"{lib}: {'yes' if ok else 'NO'} ({note})")
                ratio = med[(row, "ours")] / med[(row, lib)]
                entry[f"ours/{lib}"] = ratio
                cells += [f"{med[(row, lib)]:.3f}", f"**{ratio:.2f}**" if ok else f"~~{ratio:.2f}~~"]
            else:
                cells += ["", ""]
        if "ours (plain)" in libs and mine:
            ok, note = agreement(mine.output, libs["ours (plain)"].output, 1e-3)
            all_ok &= ok
            checks.append(f"plain path: {'yes' if ok else 'NO'} ({note}); plain {med[(row, 'ours (plain)')]:.3f} s")
        passes = mine.output.scored if mine and mine.output and mine.output.scored is not None else None
        if passes is None and mine and mine.output and mine.output.weights is not None and "Score-CAM" in row:
            passes = int(np.prod(mine.output.weights.shape))
        if passes is not None and best_forward:
            floor = passes / n_images * best_forward
            entry.update(passes=passes, floor=floor, floor_ratio=med[(row, "ours")] / floor)
            if nchw_forward:
                entry["floor_ratio_nchw"] = med[(row, "ours")] / (passes / n_images * nchw_forward)
            cells += [str(passes // n_images), f"{floor:.3f}", f"{med[(row, 'ours')] / floor:.2f}"]
        else:
            cells += ["", "", ""]
        if score_cam and row.startswith("Grad++ScoreCAM"):
            entry["speedup_vs_scorecam"] = score_cam / med[(row, "ours")]
            checks.append(f"{score_cam / med[(row, 'ours')]:.1f}x faster than our Score-CAM")
        cells.append("; ".join(checks))
        summary[row] = entry
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _acceptance(med, summary)]
    if forward:
        lines += ["", "Forward pass, seconds per image at batch " + str(batch_size) + ": "
                  + ", ".join(f"{k.removeprefix('forward ')[1:-1]} {v:.4f}" for k, v in forward.items())]  # fmt: skip
    return "\n".join(lines), summary, all_ok


def _acceptance(med: dict[tuple[str, str], float], summary: dict) -> str:
    """The issue's acceptance numbers in one line (also stored under ``acceptance`` in the JSON)."""
    ours_time = med.get(("Score-CAM", "ours"))
    found: dict[str, float] = {}
    for lib, row in (
        ("pytorch-grad-cam", "Score-CAM, pytorch-grad-cam reading"),
        ("torchcam", "Score-CAM, torchcam reading"),
    ):
        if ours_time and (row, lib) in med:
            found[f"scorecam/{lib}"] = ours_time / med[(row, lib)]
            found[f"scorecam/{lib} (same reading)"] = med[(row, "ours")] / med[(row, lib)]
    if "floor_ratio" in summary.get("Score-CAM", {}):
        found["floor ratio"] = summary["Score-CAM"]["floor_ratio"]
        found["floor ratio vs NCHW forward"] = summary["Score-CAM"].get("floor_ratio_nchw", float("nan"))
    if ours_time and ("Grad++ScoreCAM, max_channels=64", "ours") in med:
        found["Grad++ScoreCAM(64) speed-up"] = ours_time / med[("Grad++ScoreCAM, max_channels=64", "ours")]
    summary["acceptance"] = found
    return "Acceptance numbers: " + ", ".join(f"{k} {v:.2f}" for k, v in found.items())


# ------------------------------------------------------------------------------------------ peak memory
def peak_rss_child(args: argparse.Namespace) -> None:
    """Run one Score-CAM call of one library in this (fresh) process and print the peak RSS in MiB."""
    torch.set_num_threads(args.threads)
    model, layer, images, targets = build(args, args.models[0])
    library = args.rss_child
    if library == "ours":
        run = ours(ScoreCAM, model, layer, images, targets, batch_size=args.batch_size, autocast=args.autocast,
                   fuse_batchnorm=args.fuse)  # fmt: skip
    elif library == "pytorch-grad-cam":
        run = pytorch_grad_cam("ScoreCAM", model, dict(model.named_modules())[layer], images, targets, args.batch_size)
    else:
        run = torchcam("ScoreCAM", model, layer, images, targets, args.batch_size)
    before = _vm("VmRSS")
    if images.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run()
    # VmHWM, the high-water mark of this process's memory map: unlike getrusage's ru_maxrss it does not
    # inherit the parent's peak across fork + exec.
    result = {"before_call_mib": before, "peak_mib": _vm("VmHWM")}
    if images.device.type == "cuda":
        result["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def _vm(key: str) -> float:
    """A line of /proc/self/status in MiB (Linux)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024


def peak_rss(args: argparse.Namespace, name: str, library: str) -> dict:
    command = [sys.executable, __file__, "--rss-child", library, "--models", name, "--size", str(args.size),
               "--images", "1", "--batch-size", str(args.batch_size), "--threads", str(args.threads),
               "--device", args.device]  # fmt: skip
    if args.autocast:
        command += ["--autocast", args.autocast]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ | {"TQDM_DISABLE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------- main
def machine(args: argparse.Namespace) -> str:
    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU {cpu}, {os.cpu_count()} cores"
    libs = []
    for lib in ("pytorch_grad_cam", "torchcam"):
        try:
            from importlib.metadata import version

            libs.append(f"{lib} {version({'pytorch_grad_cam': 'grad-cam'}.get(lib, lib))}")
        except Exception:  # noqa: BLE001
            libs.append(f"{lib} ?")
    return (f"{device}; torch {torch.__version__}, {args.threads} threads; " + ", ".join(libs)
            + f"; load average before {os.getloadavg()[0]:.2f}")  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    methods = ["CAM", "Grad-CAM", "Grad-CAM++", "SmoothGrad-CAM++", "Score-CAM", "Score-CAM/pytorch-grad-cam",
               "Score-CAM/torchcam", "Grad++ScoreCAM"]  # fmt: skip
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"], choices=sorted(LAYERS))
    p.add_argument("--methods", nargs="+", default=methods, choices=methods)
    p.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    p.add_argument("--images", type=int, default=1, help="images per call (default 1)")
    p.add_argument("--batch-size", type=int, default=32, help="chunk size of the masked passes, for every library")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time (default), or process CPU time: steadier on a shared machine with --threads 1")  # fmt: skip
    p.add_argument("--inner", type=int, default=5, help="calls per timing of the cheap (gradient) methods")
    p.add_argument("--budgets", nargs="+", default=["none", "64"], help="Grad++ScoreCAM max_channels values")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--autocast", choices=["bf16", "fp16"], default=None, help="ours only (the references have no such option)"
    )
    p.add_argument(
        "--no-plain", dest="plain", action="store_false", help="skip timing our plain path (all speed options off)"
    )
    p.add_argument("--no-floor", dest="floor", action="store_false")
    p.add_argument("--floor-batches", type=int, default=0,
                   help="forward passes of one chunk per floor timing (default: as many as a Score-CAM call makes for "
                        "our forward, 4 for the others)")  # fmt: skip
    p.add_argument("--rss", nargs="*", default=["ours", "pytorch-grad-cam", "torchcam"],
                   help="libraries whose peak RSS of one Score-CAM call is measured in a subprocess (none: skip)")  # fmt: skip
    p.add_argument(
        "--out", type=Path, default=Path("results/benchmarks"), help="folder for the JSON and markdown results"
    )
    p.add_argument("--rss-child", metavar="LIBRARY", default=None,
                   help="only this: one Score-CAM call of LIBRARY (ours, pytorch-grad-cam, torchcam) on --models' first "
                        "network in this process, printing its peak RSS as JSON (what --rss runs in a subprocess)")  # fmt: skip
    p.add_argument(
        "--no-fuse",
        dest="fuse",
        action="store_false",
        help="with --rss-child ours: fuse_batchnorm=False (how much memory the folded copy takes)",
    )
    args = p.parse_args(argv)
    args.budgets = [None if b.lower() in ("none", "all") else int(b) for b in args.budgets]
    if args.clock == "cpu" and args.device != "cpu":
        p.error("--clock cpu measures host CPU time; time GPU runs with the wall clock")
    args.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.autocast)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.rss_child:
        peak_rss_child(args)
        return 0
    os.environ["TQDM_DISABLE"] = "1"
    logging.getLogger("torchcam").setLevel(logging.ERROR)  # its CAM logs which fc layer it picked, every call
    import pytorch_grad_cam.score_cam as pgc_score_cam

    pgc_score_cam.tqdm.tqdm = lambda iterable, *a, **k: (
        iterable
    )  # silence its per-chunk bar (ours and torchcam print none)
    try:
        import cv2

        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    header = machine(args)
    print(header, flush=True)
    reports, summaries, all_ok = (
        [header, ""],
        {"machine": header, "args": {k: str(v) for k, v in vars(args).items()}},
        True,
    )
    for name in args.models:
        model, layer, images, targets = build(args, name)
        rows = contestants(args, model, layer, images, targets)
        print(
            f"{name} ({layer}), {args.images} image(s) of {args.size}x{args.size}, chunk {args.batch_size}", flush=True
        )
        time_all(rows, args.repeats, device, args.clock, lambda s: print(s, flush=True))
        text, summary, ok = table(
            f"{name}, {args.size}x{args.size}, batch_size {args.batch_size}",
            rows,
            args.images,
            args.batch_size,
            args.clock,
        )
        all_ok &= ok
        for library in args.rss:
            summary.setdefault("peak_rss", {})[library] = peak_rss(args, name, library)
        if args.rss:
            text += (
                "\n\nPeak RSS of one Score-CAM call (fresh process; before the call, with the model loaded): "
                + ", ".join(
                    f"{lib} {m['peak_mib']:.0f} MiB ({m['before_call_mib']:.0f})"
                    for lib, m in summary["peak_rss"].items()
                )
            )
        print("\n" + text + "\n", flush=True)
        reports += [text, ""]
        summaries[name] = summary
    reports.append(f"load average after {os.getloadavg()[0]:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"score_speed-{stamp}.md").write_text("\n".join(reports) + "\n")
    (args.out / f"score_speed-{stamp}.json").write_text(json.dumps(summaries, indent=2, default=str))
    print(f"load average after {os.getloadavg()[0]:.2f}; results in {args.out}/score_speed-{stamp}.*")
    if not all_ok:
        print("MISMATCH: some maps being timed do not agree (see 'maps agree'); ratios struck out.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
