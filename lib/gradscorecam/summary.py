"""Per-method summary of a results table: means with 95 % bootstrap confidence intervals, for the notebooks.

The interval of each mean is a percentile bootstrap (``scipy.stats.bootstrap``, ``method="percentile"``,
2000 resamples, a fresh ``numpy.random.default_rng(seed)`` with seed 0 for every interval), over the images
that have a value. The percentile method rather than BCa because per-image Average Increase is 0 or 100 and
many drops are 0: BCa is undefined on such degenerate resamples, the percentile interval is not.

Two kinds of rows have fewer values, by one rule shared with :mod:`gradscorecam.metrics`:

* **Y <= 0** (possible with ``score="logit"``): the drop relative to a non-positive score is undefined, the
  runner records ``drop`` as NaN and the mean is over the other images, exactly as
  :func:`gradscorecam.metrics.average_drop` leaves them out (with a warning); ``undefined_drop`` counts them.
* **All-zero maps** (note ``all-zero map``, e.g. every channel weight <= 0): the map ranks no pixel and has no
  maximum, so deletion/insertion and the pointing games are NaN and left out of those means (the per-object
  ``objects_found`` counts such a map as finding no object, and its ``min_object_energy`` is NaN); their Y, O,
  drop and increase are defined (the explanation X * 0 keeps nothing) and stay in Average Drop/Increase, as
  :func:`~gradscorecam.metrics.average_drop` (which only sees Y and O) counts them too. ``degenerate_maps``
  counts them: a method with many is rewarded on the map metrics by their absence, so read them together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from .explainers import METHODS
from .results import DEGENERATE_NOTE, check_single_config

#: (results column, summary name): per-image values whose mean is the reported metric.
METRICS: tuple[tuple[str, str], ...] = (
    ("drop", "average_drop"),
    ("increase", "average_increase"),
    ("deletion_auc", "deletion_auc"),
    ("insertion_auc", "insertion_auc"),
    ("pointing_hit", "pointing_game"),
    ("energy_pointing", "energy_pointing"),
    ("objects_found", "objects_found"),
    ("min_object_energy", "min_object_energy"),
)


def summarize(
    df: pd.DataFrame,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    metrics: Sequence[tuple[str, str]] = METRICS,
) -> pd.DataFrame:
    """One row per method (in the paper's column order): for each metric its mean and CI, N, and seconds.

    Columns: ``n_images`` (rows of the method), for each metric ``<name>`` (the mean over images with a value),
    ``<name>_low``/``<name>_high`` (the bootstrap interval) and ``<name>_n`` (images with a value; the
    pointing games only count images with boxes, the per-object scores images with at least two boxes of the
    explained class), ``seconds_per_image`` (mean time of the explanation),
    ``notes`` (rows with a note, e.g. CAM undefined for the model), ``degenerate_maps`` (rows whose map was zero
    everywhere) and ``undefined_drop`` (rows with Y <= 0); see the module docstring for how both are counted. Average Drop/Increase are in percent,
    the pointing game is a hit rate in [0, 1]. Metrics without any value are left out.
    Raises ResultsMismatchError if ``df`` mixes configurations.
    """
    if df.empty:
        raise ValueError("no results to summarise")
    check_single_config(df)
    order = [m for m in METHODS if m in set(df["method"])] + sorted(set(df["method"]) - set(METHODS))
    rows = []
    for method in order:
        part = df[df["method"] == method]
        row: dict[str, object] = {"method": method, "n_images": len(part)}
        for column, name in metrics:
            if column not in part.columns:
                continue
            values = pd.to_numeric(part[column], errors="coerce").dropna().to_numpy(dtype=float)
            if not len(values) and not pd.to_numeric(df[column], errors="coerce").notna().any():
                continue
            # the seed, not a shared generator: a method's CI does not depend on which other methods are in df
            low, high = mean_confidence_interval(values, confidence, n_resamples, seed)
            row.update({name: values.mean() if len(values) else math.nan, f"{name}_low": low, f"{name}_high": high,
                        f"{name}_n": len(values)})  # fmt: skip
        seconds = pd.to_numeric(part["seconds"], errors="coerce").dropna()
        row["seconds_per_image"] = seconds.mean() if len(seconds) else math.nan
        notes = part["note"].fillna("").astype(str) if "note" in part.columns else pd.Series("", index=part.index)
        row["notes"] = int((notes != "").sum())
        row["degenerate_maps"] = int(notes.str.startswith(DEGENERATE_NOTE).sum())
        row["undefined_drop"] = (
            int((pd.to_numeric(part["Y"], errors="coerce") <= 0).sum()) if "Y" in part.columns else 0
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def mean_confidence_interval(
    values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, rng: np.random.Generator | int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (NaN, NaN with fewer than two values)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])  # every resample has this mean
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    result = bootstrap(
        (values,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
        random_state=generator, vectorized=True,
    )  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
