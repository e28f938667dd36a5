"""Reproducible random subsets of an image source, and the list of the chosen images next to the results."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from pathlib import Path

from .records import ImageRecord


def sample(records: Sequence[ImageRecord], n: int | None, seed: int = 0) -> list[ImageRecord]:
    """``n`` records chosen at random with ``seed``, the same on every machine and library version.

    Each record gets the key ``sha256(f"{seed}:{image_id}")`` and the ``n`` smallest keys are chosen, returned
    in the source's order. The choice depends only on the seed and the image ids (not on numpy's or Python's
    random streams, which may change between versions), and samples are nested: with one seed the first
    30 images are also among the first 1000. ``n=None`` or ``n >= len(records)`` keeps every record.
    """
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0 or None, got {n}")
    ids = [r.image_id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("records must have unique image ids to be sampled reproducibly")
    if n is None or n >= len(records):
        return list(records)
    ranked = sorted(range(len(records)), key=lambda i: hashlib.sha256(f"{seed}:{ids[i]}".encode()).hexdigest())
    chosen = sorted(ranked[:n])
    return [records[i] for i in chosen]


def write_image_list(records: Sequence[ImageRecord], path: str | Path) -> Path:
    """Write ``image_id,class_index,path`` of the records to a CSV file (the images a run used)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "class_index", "path"])
        for record in records:
            writer.writerow([record.image_id, record.class_index, str(record.path)])
    return path


def read_image_list(path: str | Path) -> list[str]:
    """The image ids of a file written by :func:`write_image_list`, in order."""
    with Path(path).open(newline="") as handle:
        return [row["image_id"] for row in csv.DictReader(handle)]
