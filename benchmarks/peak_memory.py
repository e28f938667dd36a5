"""Peak resident memory of one Score-CAM call, in a fresh process (issue 6: ResNet-50 on CPU under 1.5 GB).

    PYTHONPATH=lib python benchmarks/peak_memory.py --model resnet50 [--batch-size 16] [--no-fuse]

Random weights (``weights=None``), one 224x224 image. ``ru_maxrss`` is the process's peak, so the number
includes Python, torch and the model; the line also gives the peak before the call.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torchvision

from gradscorecam import ScoreCAM
from gradscorecam.models import default_target_layer


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-fuse", dest="fuse", action="store_false", help="fuse_batchnorm=False")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, weights=None).eval()
    layer = default_target_layer(args.model, model)
    image = torch.randn(1, 3, 224, 224)
    before = _peak_mib()
    start = time.perf_counter()
    ScoreCAM(model, layer, batch_size=args.batch_size, fuse_batchnorm=args.fuse)(image)
    print(f"{args.model} {layer} Score-CAM, batch_size {args.batch_size}, fuse_batchnorm {args.fuse}: "
          f"peak RSS {_peak_mib():.0f} MiB (before the call {before:.0f} MiB), {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
