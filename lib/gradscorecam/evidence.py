"""The verdict tables of the README and docs/evidence.md, rendered from a per-image results file.

A verdict the README states is the output of ``python -m gradscorecam.evidence RESULTS`` on a results file of
:func:`gradscorecam.evaluate` kept under ``data/evidence/`` (gzip-compressed CSV). ``tests/test_evidence.py``
renders every kept file again and checks that the README or docs/evidence.md holds the tables verbatim, so a
number there cannot drift from the rows that made it, and anyone can recompute it from the rows.

Two tables, both paired over images (:func:`gradscorecam.verdict.compare`, 95 % percentile bootstrap with
10,000 resamples, seed 0):

* **the paper's claims** (:func:`gradscorecam.verdict.claim_verdicts`): Grad++ScoreCAM − baseline with its
  interval and p-value, and the verdict "holds", "fails" or "cannot tell at N = n";
* **Figure 5 as a number**, when the rows have per-object scores (images with several objects of the
  explained class, :func:`gradscorecam.metrics.object_scores`): per method the mean share of objects found and
  the worst-served object's energy ratio with their intervals, and Grad++ScoreCAM's paired difference from
  each other method on the share found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .explainers import METHODS
from .results import merge_results
from .summary import summarize
from .verdict import claim_verdicts, compare

MINUS = "\u2212"  # the README's minus sign


def signed(value: float, decimals: int) -> str:
    """``+1.2`` / ``−1.2`` (a typographic minus), ``n/a`` for NaN. Only an exact 0 is unsigned: a bound that
    rounds to zero keeps its sign (``−0.0``), so an interval's side of 0 can always be read off."""
    if math.isnan(value):
        return "n/a"
    text = f"{abs(value):.{decimals}f}"
    if value == 0:
        return text
    return ("+" if value > 0 else MINUS) + text


def p_text(p_value: float) -> str:
    """The p-value as the tables print it: ``< 1e-4`` below that, otherwise three significant digits (so that
    0.0496 is not shown as 0.05)."""
    if math.isnan(p_value):
        return "n/a"
    if p_value < 1e-4:
        return "< 1e-4"
    return f"{p_value:.3g}"


def _plain(value: float, decimals: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{decimals}f}"


def _decimals(low: float, high: float) -> int:
    """One decimal for an interval wider than a point, two for a narrower one."""
    return 1 if high - low >= 1 else 2


def claims_markdown(claims: pd.DataFrame, method: str = "Grad++ScoreCAM") -> str:
    """The claims table (from :func:`~gradscorecam.verdict.claim_verdicts`) as Markdown."""
    lines = [
        f"| claim | verdict | {method} {MINUS} baseline [95 % CI] | p |",
        "| --- | --- | --- | --- |",
    ]
    for row in claims.itertuples(index=False):
        claim = str(row.claim).removeprefix(f"{method} has a ").removeprefix(f"{method} is ")
        verdict = f"**{row.verdict}**"
        if str(row.verdict).startswith("not measured"):
            numbers = "not measured"
        elif row.metric == "seconds":
            numbers = (
                f"{row.ratio:.2f}\u00d7 {row.baseline}'s time [{_plain(row.ratio_low)}, {_plain(row.ratio_high)}] "
                f"({row.method_mean:.3g} s against {row.baseline_mean:.3g} s per image)"
            )
        else:
            d = _decimals(row.low, row.high)
            numbers = (
                f"{signed(row.mean_difference, d)} points [{signed(row.low, d)}, {signed(row.high, d)}] "
                f"({row.method_mean:.1f} % against {row.baseline_mean:.1f} %)"
            )
        lines.append(f"| {claim} | {verdict} | {numbers} | {p_text(float(row.p_value))} |")
    return "\n".join(lines)


def objects_markdown(df: pd.DataFrame, table: pd.DataFrame, method: str = "Grad++ScoreCAM") -> str:
    """Figure 5 as a number: per method, objects found (%) and the worst-served object's energy ratio with
    95 % intervals over the images with per-object scores, and ``method``'s paired difference in objects found
    from each other method (``table`` is :func:`~gradscorecam.verdict.compare`'s). Empty without such rows."""
    scored = df[pd.to_numeric(df["objects_found"], errors="coerce").notna()] if "objects_found" in df else df[:0]
    if scored.empty:
        return ""
    summary = summarize(scored, metrics=(("objects_found", "found"), ("min_object_energy", "energy")))
    found = table[table["metric"] == "objects_found"].set_index("baseline")
    lines = [
        f"| method | images | objects found % [95 % CI] | min object energy [95 % CI] | {method} {MINUS} method, "
        "objects found [95 % CI] | p | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in summary.iterrows():
        energy = "n/a"
        if "energy" in summary.columns and not math.isnan(row["energy"]):
            energy = f"{row['energy']:.2f} [{_plain(row['energy_low'])}, {_plain(row['energy_high'])}]"
            if row["energy_n"] != row["found_n"]:  # maps with no energy in any box: fewer images
                energy += f" (N = {int(row['energy_n'])})"
        cells = [
            str(name),
            str(int(row["found_n"])),
            f"{row['found'] * 100:.1f} [{_plain(row['found_low'] * 100, 1)}, {_plain(row['found_high'] * 100, 1)}]",
            energy,
        ]
        if name in found.index:
            pair = found.loc[name]
            d = _decimals(pair["low"] * 100, pair["high"] * 100)
            cells += [
                f"{signed(pair['mean_difference'] * 100, d)} points [{signed(pair['low'] * 100, d)}, "
                f"{signed(pair['high'] * 100, d)}] (N = {int(pair['n'])})",
                p_text(float(pair["p_value"])),
                _better_text(pair["better"], int(pair["n"])),
            ]
        else:
            cells += ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _better_text(better: object, n: int) -> str:
    if better is True:
        return "finds more"
    if better is False:
        return "finds fewer"
    return f"cannot tell at N = {n}"


def provenance_text(df: pd.DataFrame) -> str:
    """One sentence naming what the rows were computed with (no file paths: those are the maker's machine's)."""
    first = df.iloc[0]
    methods = [m for m in METHODS if m in set(df["method"])]
    steps = int(first["deletion_steps"]) if str(first.get("deletion_steps")) not in ("", "nan") else 0
    return (
        f"{first['model']}, `{first['target_layer']}`, {df['image_id'].nunique()} images, {len(methods)} methods, "
        f"{first['score']} of the {first['target_class']} class, masking in the {first['masking']} input space, "
        f"seed {first['seed']}, {steps} deletion steps; library {' and '.join(sorted(set(df['library_version'].astype(str))))}, "
        f"torch {first['torch_version']}, {first['device']}"
    )


def evidence_markdown(paths: Sequence[str | Path], method: str = "Grad++ScoreCAM") -> str:
    """The provenance line, the claims table and (when present) the per-object table of a results file."""
    df = merge_results(paths)
    table = compare(df, method, n_resamples=10000, seed=0)
    parts = [f"Rows: {provenance_text(df)}.", claims_markdown(claim_verdicts(table, method), method)]
    objects = objects_markdown(df, table, method)
    if objects:
        parts.append(objects)
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gradscorecam.evidence RESULTS [RESULTS ...]``: print the Markdown tables of the verdicts
    (the claims, and Figure 5 as a number where the rows have per-object scores) of one run."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gradscorecam.evidence", description=main.__doc__)
    parser.add_argument("results", nargs="+", help="results file(s) of one run (.csv, .csv.gz or .parquet)")
    parser.add_argument("--method", default="Grad++ScoreCAM", help="the method under test")
    args = parser.parse_args(argv)
    print(evidence_markdown(args.results, args.method))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
