"""Does Grad++ScoreCAM beat the other methods? Paired comparisons over the images of one results table.

Every method of a results table (:func:`gradscorecam.evaluate`) is scored on the same images, so the question
"is method A better than method B" is about the per-image differences d_i = a_i − b_i, not about two separate
means: the images' own difficulty cancels in d_i, and the test is far more powerful than comparing two unpaired
95 % intervals (which can overlap while every image says the same thing).

>>> from gradscorecam import compare, claim_verdicts
>>> table = compare(results, method="Grad++ScoreCAM")      # one row per (baseline, metric)
>>> claim_verdicts(table)                                   # the paper's claims: holds / fails / cannot tell

For each (baseline, metric), over the n images where both methods have a value (matched on ``image_id``):

* ``method_mean``, ``baseline_mean`` and ``mean_difference`` = (1/n) Σ d_i (method − baseline, in the metric's
  unit: percent for Average Drop/Increase, seconds for time);
* ``low``, ``high``: the paired percentile bootstrap interval of the mean difference, resampling *images*
  (the pairs stay together): :func:`gradscorecam.summary.mean_confidence_interval` on d, ``n_resamples``
  resamples from ``numpy.random.default_rng(seed)`` (the same helper and the same reasons as the summaries:
  percentile, not BCa, because many d_i are 0);
* ``p_value`` (two-sided): for a continuous metric the Wilcoxon signed-rank test
  (``scipy.stats.wilcoxon(d, zero_method="wilcox")``). **Zero differences** (images where both methods score
  the same, frequent for Average Drop where both are 0) say nothing about the direction and are discarded
  before ranking, scipy's default; the test is on the images that differ, while n, the mean difference and
  its interval count every pair. If every d_i is 0 the p-value is 1. For a binary per-image metric the exact
  McNemar test: with ``method_only`` images where only the method succeeds and ``baseline_only`` where only
  the baseline does (the discordant pairs), p = ``scipy.stats.binomtest(method_only, method_only +
  baseline_only, 0.5).pvalue``; concordant pairs carry no information (1 when there is no discordant pair);
* ``better`` (:func:`decide`): True when the interval lies entirely on the metric's good side of 0 (above
  for higher-is-better metrics, below for lower-is-better ones) *and* the test agrees (p < 1 − confidence),
  False when both say the bad side, None ("cannot tell") otherwise. The test guards small N: with n pairs the
  percentile bootstrap only ever sees the n observed differences, so with 2 images of the same sign its
  interval excludes 0 although nothing is known (the signed-rank p-value is then 0.5; an exact two-sided
  signed-rank test needs n ≥ 6 same-sign differences to reach p < 0.05);
* for ``seconds`` also ``ratio`` = mean(method seconds) / mean(baseline seconds) with its paired percentile
  bootstrap interval ``ratio_low``, ``ratio_high`` (the same image resamples for both means).

The runner's per-image columns (:data:`gradscorecam.results.RESULT_COLUMNS`) and the paper's metric names:
``drop`` (per-image Average Drop, max(0, Y − O)/Y × 100; lower is better), ``increase`` (the per-image Average
Increase indicator 1[Y < O] × 100, so binary: 0 or 100; higher is better), ``deletion_auc`` (lower),
``insertion_auc`` (higher), ``pointing_hit`` (pointing game hit, 0 or 1; higher), ``energy_pointing``
(energy-based pointing game, higher), ``objects_found`` and ``min_object_energy`` (the per-object
localisation of images with several objects of the explained class, Figure 5 as a number; each a per-image
share or ratio, so continuous; higher) and ``seconds`` (time of the explanation; lower). A binary metric's
success is a value > 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import binomtest, bootstrap, wilcoxon

from .explainers import METHODS
from .results import check_single_config
from .summary import mean_confidence_interval

Direction = Literal["higher", "lower"]
Kind = Literal["continuous", "binary"]

#: The runner's per-image columns compared by default: (which direction is better, continuous or binary).
METRICS: dict[str, tuple[Direction, Kind]] = {
    "drop": ("lower", "continuous"),
    "increase": ("higher", "binary"),
    "deletion_auc": ("lower", "continuous"),
    "insertion_auc": ("higher", "continuous"),
    "pointing_hit": ("higher", "binary"),
    "energy_pointing": ("higher", "continuous"),
    "objects_found": ("higher", "continuous"),
    "min_object_energy": ("higher", "continuous"),
    "seconds": ("lower", "continuous"),
}
#: The columns of :func:`compare`'s table (``ratio``, ``ratio_low``, ``ratio_high`` are NaN except for seconds).
COLUMNS = ("baseline", "metric", "n", "dropped", "method_mean", "baseline_mean", "mean_difference", "low", "high",
           "p_value", "better", "note", "test", "method_only", "baseline_only", "ratio", "ratio_low", "ratio_high")  # fmt: skip


def compare(
    df: pd.DataFrame,
    method: str = "Grad++ScoreCAM",
    baselines: Sequence[str] | str | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10000,
    seed: int = 0,
    metrics: Mapping[str, tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Paired comparison of ``method`` with each baseline on every metric present in ``df`` (see the module).

    Args:
        df: a results table of the runner, one configuration (``image_id``, ``method`` and metric columns).
        method: the method under test.
        baselines: the methods it is compared with; None: every other method in ``df`` (the paper's order).
        confidence: level of the bootstrap intervals; ``better`` also needs p < 1 − ``confidence``.
        n_resamples: bootstrap resamples per interval.
        seed: every interval draws from a fresh ``numpy.random.default_rng(seed)``, so a row does not depend on
            which other rows are computed.
        metrics: extra or overriding metrics, ``{column: ("higher" | "lower", "continuous" | "binary")}``, e.g.
            a per-object localisation score; added to :data:`METRICS`.

    Returns:
        One row per (baseline, metric) with the columns of :data:`COLUMNS`. Metrics without any value in
        ``df`` are left out; a pair with fewer than 2 paired images has NaN interval and p-value and a ``note``.

    Raises:
        ResultsMismatchError: ``df`` mixes configurations (compare each configuration separately).
        ValueError: ``method`` or a baseline is not in ``df`` (the message names the methods present), or a
            metric specification is not one of the allowed values.
    """
    if df.empty:
        raise ValueError("no results to compare: the results table is empty")
    check_single_config(df)
    present = [m for m in METHODS if m in set(df["method"])] + sorted(set(df["method"].astype(str)) - set(METHODS))
    if method not in present:
        raise ValueError(f"method {method!r} is not in the results; methods present: {present}")
    if baselines is None:
        others = [m for m in present if m != method]
    else:
        others = [baselines] if isinstance(baselines, str) else list(baselines)
    missing = [b for b in others if b not in present]
    if missing:
        raise ValueError(f"baseline(s) {missing} not in the results; methods present: {present}")
    if method in others:
        raise ValueError(f"{method!r} cannot be its own baseline; baselines given: {others}")
    specs = _metric_specs(metrics)
    columns = [c for c in specs if c in df.columns and pd.to_numeric(df[c], errors="coerce").notna().any()]
    ours = df[df["method"] == method]
    rows = []
    for baseline in others:
        table = paired_comparison(ours, df[df["method"] == baseline], {c: specs[c] for c in columns}, confidence,
                                  n_resamples, seed)  # fmt: skip
        table.insert(0, "baseline", baseline)
        rows.append(table)
    if not rows:
        return pd.DataFrame(columns=list(COLUMNS))
    return _object_better(pd.concat(rows, ignore_index=True)[list(COLUMNS)])


def paired_comparison(
    method_rows: pd.DataFrame,
    baseline_rows: pd.DataFrame,
    metrics: Mapping[str, tuple[str, str]] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10000,
    seed: int = 0,
) -> pd.DataFrame:
    """The per-metric rows of :func:`compare` (without ``baseline``) for two sets of per-image rows.

    No configuration check: the caller says the rows are comparable (the ablation compares Grad++ScoreCAM
    configurations, whose explainer options differ by design, with baselines on the same images and settings).
    ``metrics`` defaults to the columns of :data:`METRICS` present in either frame.
    """
    if metrics is None:
        specs = {c: s for c, s in METRICS.items() if c in method_rows.columns or c in baseline_rows.columns}
    else:
        specs = _metric_specs(metrics, base={})
    a_frame, b_frame = _by_image(method_rows, "method"), _by_image(baseline_rows, "baseline")
    images = a_frame.index.union(b_frame.index)
    rows = []
    for column, (direction, kind) in specs.items():
        a = _column(a_frame, column).reindex(images)
        b = _column(b_frame, column).reindex(images)
        both = a.notna() & b.notna()
        if kind == "binary":
            _check_binary(column, pd.concat([a, b]).dropna().to_numpy(float))
        row = _compare_arrays(a[both].to_numpy(float), b[both].to_numpy(float), direction, kind, confidence,
                              n_resamples, seed, ratio=column == "seconds")  # fmt: skip
        rows.append({"metric": column, "dropped": int((~both).sum()), **row})
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "baseline"])
    return _object_better(table)


def claim_verdicts(table: pd.DataFrame, method: str = "Grad++ScoreCAM") -> pd.DataFrame:
    """The paper's claims, one row each, from :func:`compare`'s table: "holds", "fails" or "cannot tell at N = n".

    Claims: lower Average Drop than Grad-CAM++, and than Score-CAM; higher Average Increase than each; faster
    than Score-CAM (lower ``seconds``). A claim holds when the paired interval of the mean difference lies on
    the claimed side of 0 (``better`` is True), fails when it lies on the other side (False), and cannot be told
    at the number of paired images otherwise (:func:`decide`). A baseline not in the table gives "not measured".
    The numbers behind each verdict (n, means, mean difference, its interval, p-value, and the speed ratio) are
    in the row.
    """
    claims = (
        (f"{method} has a lower Average Drop than Grad-CAM++", "Grad-CAM++", "drop"),
        (f"{method} has a lower Average Drop than Score-CAM", "Score-CAM", "drop"),
        (f"{method} has a higher Average Increase than Grad-CAM++", "Grad-CAM++", "increase"),
        (f"{method} has a higher Average Increase than Score-CAM", "Score-CAM", "increase"),
        (f"{method} is faster than Score-CAM", "Score-CAM", "seconds"),
    )
    numbers = ("n", "method_mean", "baseline_mean", "mean_difference", "low", "high", "p_value", "ratio", "ratio_low",
               "ratio_high")  # fmt: skip
    rows = []
    for claim, baseline, metric in claims:
        match = table[(table["baseline"] == baseline) & (table["metric"] == metric)]
        row: dict[str, Any] = {"claim": claim, "baseline": baseline, "metric": metric}
        if match.empty:
            rows.append({**row, "verdict": f"not measured ({baseline} or {metric} not in the comparison)"})
            continue
        found = match.iloc[0]
        row.update({k: found.get(k, math.nan) for k in numbers})
        row["verdict"] = verdict_text(found["better"], int(found["n"]))
        rows.append(row)
    return pd.DataFrame(rows, columns=["claim", "verdict", "baseline", "metric", *numbers])


# ----------------------------------------------------------------------------------------- internals
def _metric_specs(
    extra: Mapping[str, tuple[str, str]] | None, base: Mapping[str, tuple[Direction, Kind]] = METRICS
) -> dict[str, tuple[Direction, Kind]]:
    """``base`` updated with the checked specifications of ``extra``."""
    specs: dict[str, Any] = dict(base)
    for column, spec in (extra or {}).items():
        if not (isinstance(spec, tuple | list) and len(spec) == 2 and spec[0] in ("higher", "lower")
                and spec[1] in ("continuous", "binary")):  # fmt: skip
            raise ValueError(f'metric {column!r}: expected ("higher" | "lower", "continuous" | "binary"), got {spec!r}')
        specs[column] = (spec[0], spec[1])
    return specs


def _check_binary(column: str, values: np.ndarray) -> None:
    """A binary metric holds 0 and one success value (1 for hits, 100 for the Average Increase indicator)."""
    successes = np.unique(values[values != 0])
    if len(successes) > 1 or np.any(values < 0):
        raise ValueError(f"metric {column!r} is compared as binary (0 or one success value) but holds "
                         f"{np.unique(values)[:6].tolist()}...; declare it 'continuous' in metrics=")  # fmt: skip


def _object_better(table: pd.DataFrame) -> pd.DataFrame:
    """``better`` as Python True / False / None (a column without None would become numpy bools)."""
    table["better"] = pd.Series(
        [None if v is None else bool(v) for v in table["better"]], index=table.index, dtype=object
    )
    return table


def _by_image(rows: pd.DataFrame, side: str) -> pd.DataFrame:
    ids = rows["image_id"].astype(str)
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise ValueError(f"the {side} has several rows for image {repeated.iloc[0]!r}: one row per image is needed "
                         "(were results files merged twice?)")  # fmt: skip
    return rows.set_index(ids)


def _column(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(math.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _compare_arrays(
    a: np.ndarray, b: np.ndarray, direction: Direction, kind: Kind, confidence: float, n_resamples: int, seed: int,
    ratio: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The numbers of one (baseline, metric) row from the paired values a (method) and b (baseline)."""
    n = len(a)
    row: dict[str, Any] = {
        "n": n, "method_mean": a.mean() if n else math.nan, "baseline_mean": b.mean() if n else math.nan,
        "mean_difference": (a - b).mean() if n else math.nan, "low": math.nan, "high": math.nan,
        "p_value": math.nan, "better": None, "note": "", "method_only": math.nan, "baseline_only": math.nan,
        "ratio": math.nan, "ratio_low": math.nan, "ratio_high": math.nan,
        "test": "Wilcoxon signed-rank" if kind == "continuous" else "exact McNemar",
    }  # fmt: skip
    if kind == "binary":
        success_a, success_b = a > 0, b > 0
        row["method_only"], row["baseline_only"] = (
            int((success_a & ~success_b).sum()),
            int((~success_a & success_b).sum()),
        )
    if ratio and n:
        row["ratio"] = a.mean() / b.mean() if b.mean() != 0 else math.nan
    if n < 2:
        row["note"] = f"{n} paired image(s): at least 2 are needed for an interval and a test"
        return row
    d = a - b
    row["low"], row["high"] = mean_confidence_interval(d, confidence, n_resamples, seed)
    if kind == "continuous":
        if np.any(d != 0):
            row["p_value"] = float(wilcoxon(d, zero_method="wilcox").pvalue)
        else:
            row["p_value"], row["note"] = 1.0, "every paired difference is 0"
    else:
        discordant = row["method_only"] + row["baseline_only"]
        row["p_value"] = float(binomtest(row["method_only"], discordant, 0.5).pvalue) if discordant else 1.0
        if not discordant:
            row["note"] = "no discordant pair: both methods succeed or fail on the same images"
    if ratio:
        row["ratio_low"], row["ratio_high"] = _ratio_interval(a, b, confidence, n_resamples, seed)
    row["better"] = decide(row["low"], row["high"], row["p_value"], direction, confidence)
    return row


def decide(low: float, high: float, p_value: float, direction: str, confidence: float = 0.95) -> bool | None:
    """``better``: True / False when the interval [low, high] of the mean difference (method − baseline) lies
    on the good / bad side of 0 for a ``direction`` ("higher" or "lower" is better) metric and the test's
    ``p_value`` < 1 − ``confidence``; None (cannot tell) otherwise, NaN included."""
    if not (low > 0 or high < 0) or not p_value < 1 - confidence:  # NaN compares False: cannot tell
        return None
    return bool((low > 0) == (direction == "higher"))


def verdict_text(better: bool | None, n: int) -> str:
    """A claim's verdict from :func:`decide`: "holds", "fails" or "cannot tell at N = n"."""
    return "holds" if better is True else "fails" if better is False else f"cannot tell at N = {n}"


def _ratio_interval(
    a: np.ndarray, b: np.ndarray, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float]:
    """Paired percentile bootstrap interval of mean(a) / mean(b): each resample draws images, keeping both values."""
    if np.all(a == a[0]) and np.all(b == b[0]):
        value = a[0] / b[0] if b[0] != 0 else math.nan
        return value, value  # every resample gives this ratio
    result = bootstrap(
        (a, b), lambda x, y, axis=-1: x.mean(axis=axis) / y.mean(axis=axis), paired=True, vectorized=True,
        confidence_level=confidence, n_resamples=n_resamples, method="percentile",
        random_state=np.random.default_rng(seed),
    )  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# ----------------------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gradscorecam.verdict RESULTS [RESULTS ...]``: the paired comparison and the claims' verdicts
    of one results file (or the shards of one run), as the verdicts in docs/evidence.md were made."""
    import argparse

    from .results import merge_results

    parser = argparse.ArgumentParser(prog="python -m gradscorecam.verdict", description=main.__doc__)
    parser.add_argument("results", nargs="+", help="results file(s) of gradscorecam.evaluate (.csv or .parquet)")
    parser.add_argument("--method", default="Grad++ScoreCAM", help="the method under test")
    parser.add_argument("--baselines", nargs="*", default=None, help="default: every other method in the file")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--n-resamples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the comparison to this CSV (and the claims beside it)")
    args = parser.parse_args(argv)
    df = merge_results(args.results)
    table = compare(df, args.method, args.baselines, args.confidence, args.n_resamples, args.seed)
    claims = claim_verdicts(table, args.method)
    first = df.iloc[0]
    print(f"{first.get('model')} [{first.get('weights')}] layer {first.get('target_layer')}, "
          f"{df['image_id'].nunique()} images, {first.get('score')} scores, masking in the {first.get('masking')} "
          f"space, seed {first.get('seed')}; paired over images, {args.confidence:.0%} percentile bootstrap "
          f"({args.n_resamples} resamples, seed {args.seed})")  # fmt: skip
    with pd.option_context("display.width", 220, "display.max_columns", 30, "display.max_colwidth", 60):
        shown = ["baseline", "metric", "n", "method_mean", "baseline_mean", "mean_difference", "low", "high",
                 "p_value", "better", "ratio", "ratio_low", "ratio_high"]  # fmt: skip
        print(table[shown].round(4).to_string(index=False))
        print()
        print(claims[["claim", "verdict", "n", "mean_difference", "low", "high", "p_value", "ratio"]].round(4)
              .to_string(index=False))  # fmt: skip
    if args.output:
        table.to_csv(args.output, index=False)
        claims.to_csv(str(args.output).removesuffix(".csv") + ".claims.csv", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
