#!/usr/bin/env python
"""Command line for the evaluation runner: methods x images on one model, resumable, then the summary.

Examples (run from the project root; ``PYTHONPATH=lib`` is not needed once the project is installed):

    # Table 1 protocol on 1000 random ImageNet validation images (Kaggle layout), ResNet-50
    python scripts/evaluate.py --model resnet50 --imagenet /data/ILSVRC/Data/CLS-LOC/val \
        --labels /data/LOC_val_solution.csv --n 1000 --out results/resnet50.csv --device cuda

    # one shard of a SLURM job array (give every shard its own --out; merge with merge_results)
    python scripts/evaluate.py ... --shard-index $SLURM_ARRAY_TASK_ID --num-shards 10 \
        --out results/resnet50.shard$SLURM_ARRAY_TASK_ID.csv

    # a labels CSV (file,class_index[,wnid][,x0,y0,x1,y1]) and a model file with build_model()
    python scripts/evaluate.py --model path/to/model.py --labels-csv images/labels.csv --n 30 --out results/x.csv

    # another layer, and Grad++ScoreCAM and Score-CAM scoring every channel ("all") or at most 128
    python scripts/evaluate.py --model resnet50 --layer layer3 --max-channels all ...

Rerunning the same command resumes where it stopped. The summary (means with 95 % bootstrap intervals)
is printed at the end and written to ``<out>.summary.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from gradscorecam import METHODS, evaluate, load_model, summarize
from gradscorecam.datasets import builtin_images, imagenet_folder, labels_csv, sample
from gradscorecam.explainers import method_options


def channel_budget(text: str) -> int | str:
    """``--max-channels``: a positive int, or "all" (every channel)."""
    if text == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a positive number of channels nor 'all'")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="torchvision model name or a .py file with build_model()")
    parser.add_argument("--weights", default="DEFAULT", help="torchvision weights name, or 'none' for random weights")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--imagenet", type=Path, help="ImageNet validation folder (flat or class folders)")
    source.add_argument("--labels-csv", type=Path, help="a labels CSV (file,class_index,...)")
    parser.add_argument("--labels", type=Path, help="with --imagenet: LOC_val_solution.csv or the devkit ground truth")
    parser.add_argument("--annotations", type=Path, help="with --imagenet: folder of per-image XML boxes")
    parser.add_argument("--n", type=int, default=None, help="random sample of this many images (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (also seeds torch per row)")
    parser.add_argument("--methods", nargs="+", default=["all"], help="method display names, or 'all'")
    parser.add_argument("--out", type=Path, required=True, help="results .csv or .parquet")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--score", default="probability", choices=["probability", "logit"])
    parser.add_argument("--masking", default="normalized", choices=["normalized", "pixel"])
    parser.add_argument("--top-percent", type=float, default=None)
    parser.add_argument("--target-class", default="predicted", choices=["predicted", "label"])
    parser.add_argument("--deletion-steps", type=int, default=100, help="0 skips deletion/insertion")
    parser.add_argument("--shard-index", type=int, default=0)
    parser.add_argument("--num-shards", type=int, default=1)
    parser.add_argument(
        "--layer", help="target layer, a name from model.named_modules() (default: the model's usual one)"
    )
    parser.add_argument("--max-channels", type=channel_budget, default=None,
                        help="channels the score-based methods score: a number, or 'all' (default: each method's "
                             "own, Grad++ScoreCAM 64, Score-CAM all); recorded in the results")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="discard existing results of another configuration")
    args = parser.parse_args(argv)

    weights = None if args.weights.lower() == "none" else args.weights
    # The model is never modified: the score-based methods build their masked inputs channels-last themselves
    # (gradscorecam.explainers.speed), which is where that format pays.
    spec = load_model(str(args.model), weights=weights, device=args.device)
    if args.imagenet:
        records = imagenet_folder(args.imagenet, labels=args.labels, annotations=args.annotations)
    elif args.labels_csv:
        records = labels_csv(args.labels_csv)
    else:
        records = builtin_images()
    records = sample(records, args.n, args.seed)
    methods = "all" if args.methods == ["all"] else args.methods
    layer = args.layer or spec.target_layer
    options = method_options(list(METHODS) if methods == "all" else methods, max_channels=args.max_channels)
    print(f"{spec.name} [{spec.weights}] layer {layer}: {len(records)} images, methods {methods}",
          file=sys.stderr)  # fmt: skip
    df = evaluate(
        spec, records, methods, args.out, device=args.device, batch_size=args.batch_size, score=args.score,
        masking=args.masking, top_percent=args.top_percent, target_class=args.target_class, seed=args.seed,
        deletion_steps=args.deletion_steps, shard_index=args.shard_index, num_shards=args.num_shards,
        overwrite=args.overwrite, target_layer=layer, explainer_options=options,
    )  # fmt: skip
    summary = summarize(df)
    summary.to_csv(args.out.with_name(args.out.stem + ".summary.csv"))
    columns = [c for c in ("average_drop", "average_increase", "deletion_auc", "insertion_auc", "pointing_game",
                           "energy_pointing", "seconds_per_image", "average_drop_n") if c in summary.columns]  # fmt: skip
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20):
        print(summary[columns].round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
