"""Grad++ScoreCAM's channel budget: time and faithfulness against ``max_channels`` (feeds the ablation).

    PYTHONPATH=lib python benchmarks/budget_sweep.py          # resnet18, random weights: timing only
    PYTHONPATH=lib python benchmarks/budget_sweep.py \\
        --model-file ../shared/models/mobilenet_v2_imagenet/model.py \\
        --images-dir ../shared/data/imagenet_samples --n-images 16

Scoring only the channels with the largest Grad-CAM++ weights w_k is where Grad++ScoreCAM's speed comes
from: the masked forward passes are nearly all of the time, and a budget caps them. For every budget the
script reports, per image, the time, the masked passes made, how close the map stays to the unbudgeted
one (Pearson r over pixels), and the paper's faithfulness metrics (Sec. IV-B, after Chattopadhyay et al.):

* Average Drop % = mean over images of max(0, Y^c − O^c) / Y^c × 100 (lower is better),
* Increase in Confidence % = share of images with O^c > Y^c × 100 (higher is better),

with Y^c the softmax probability of the explained (predicted) class on the image and O^c on the image
multiplied by the saliency map (``gradscorecam.metrics``, its defaults: probabilities, the normalised
input masked, the whole map kept). With random weights (the default) faithfulness means nothing: pass
a real model (``--model-file``: a file defining ``build_model()`` that returns ``model``, ``transform``
and ``target_layer``) and photographs (``--images-dir`` with ``labels.csv`` and the files it names).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

from gradscorecam import GradPlusPlusScoreCAM, ScoreCAM, metrics


def load_model(args: argparse.Namespace) -> tuple[torch.nn.Module, str, object, str]:
    if args.model_file is None:
        torch.manual_seed(0)
        return torchvision.models.resnet18(weights=None).eval(), "layer4", None, "resnet18 (random weights)"
    spec = importlib.util.spec_from_file_location("external_model", args.model_file)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    built = module.build_model()
    return built["model"].eval(), built["target_layer"], built["transform"], built.get("name", args.model_file)


def load_images(args: argparse.Namespace, transform) -> torch.Tensor:
    if args.images_dir is None or transform is None:
        return torch.randn(args.n_images, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    from PIL import Image

    with open(Path(args.images_dir) / "labels.csv") as f:
        files = [row["file"] for row in csv.DictReader(f)][: args.n_images]
    return torch.stack([transform(Image.open(Path(args.images_dir) / name).convert("RGB")) for name in files])


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-file", default=None)
    p.add_argument("--images-dir", default=None)
    p.add_argument("--n-images", type=int, default=4)
    p.add_argument("--size", type=int, default=224, help="random input size (without --images-dir)")
    p.add_argument("--budgets", nargs="+", default=["8", "16", "32", "64", "128", "256", "none"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="as in score_speed.py")
    p.add_argument("--no-scorecam", dest="scorecam", action="store_false", help="skip timing full Score-CAM")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args(argv)
    budgets = [None if b.lower() in ("none", "all") else int(b) for b in args.budgets]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    model, layer, transform, name = load_model(args)
    images = load_images(args, transform)
    with torch.inference_mode():
        targets = model(images).argmax(1).tolist()
    print(f"{name}, target layer {layer}, {len(images)} images, chunk {args.batch_size}, {args.threads} threads, {args.clock} clock, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip

    labels = [("Score-CAM", None)] if args.scorecam else []
    labels += [("Grad++ScoreCAM", b) for b in budgets]
    records: dict[tuple[str, int | None], dict[str, list[float]]] = {key: {} for key in labels}
    for i, (image, target) in enumerate(zip(images.split(1), targets, strict=True)):
        maps = {}
        for key in labels[i % len(labels) :] + labels[: i % len(labels)]:  # rotate the order per image
            method, budget = key
            explainer = (
                ScoreCAM(model, layer, batch_size=args.batch_size)
                if method == "Score-CAM"
                else GradPlusPlusScoreCAM(
                    model, layer, batch_size=args.batch_size, max_channels="all" if budget is None else budget
                )
            )
            start = clock()
            explanation = explainer.explain(image, target)
            saliency = explanation.saliency(tuple(image.shape[-2:]))
            seconds = clock() - start
            maps[key] = saliency
            y, o = metrics.explanation_scores(model, image, saliency, [target])
            rec = records[key]
            for field, value in (("seconds", seconds), ("passes", float(explanation.details["scored"].sum())),
                                 ("drop", float(metrics.drop_percent(y, o)[0])),
                                 ("increase", float(metrics.increase_percent(y, o)[0]))):  # fmt: skip
                rec.setdefault(field, []).append(value)
        full = maps.get(("Grad++ScoreCAM", None))
        for key, saliency in maps.items():
            if full is not None:
                records[key].setdefault("r_full", []).append(pearson(saliency, full))
        print(f"  image {i + 1}/{len(images)} done", flush=True)

    lines = [
        f"{name}, layer {layer}, {len(images)} images, batch_size {args.batch_size}, {args.threads} threads, {args.clock} clock",
        "",
        "| method | max_channels | masked passes | s / image (median) | speed-up vs Score-CAM | r with unbudgeted map | Average Drop % | Increase in Confidence % |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = statistics.median(records[("Score-CAM", None)]["seconds"]) if args.scorecam else None
    summary = []
    for (method, budget), rec in records.items():
        sec = statistics.median(rec["seconds"])
        row = {
            "method": method,
            "max_channels": budget,
            "passes": statistics.mean(rec["passes"]),
            "seconds": sec,
            "speedup": base / sec if base else None,
            "r_full": statistics.mean(rec["r_full"]) if "r_full" in rec else None,
            "average_drop": statistics.mean(rec["drop"]),
            "increase": statistics.mean(rec["increase"]),
        }
        summary.append(row)
        speedup = "" if base is None else f"{base / sec:.1f}x"
        r_full = "" if row["r_full"] is None else f"{row['r_full']:.3f}"
        budget_text = "all" if budget is None else str(budget)
        lines.append(
            f"| {method} | {budget_text} | {row['passes']:.0f} | {sec:.3f} | {speedup} | {r_full} | "
            f"{row['average_drop']:.1f} | {row['increase']:.1f} |"
        )
    lines += ["", f"load average after {os.getloadavg()[0]:.2f}"]
    text = "\n".join(lines)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"budget_sweep-{stamp}.md").write_text(text + "\n")
    (args.out / f"budget_sweep-{stamp}.json").write_text(json.dumps({"model": name, "rows": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
