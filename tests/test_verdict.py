"""Paired comparisons (gradscorecam.verdict): hand-made frames whose differences and verdicts can be read off,
cross-checked against scipy.stats called directly on the same arrays."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, wilcoxon

from gradscorecam import ResultsMismatchError, claim_verdicts, compare
from gradscorecam.summary import mean_confidence_interval
from gradscorecam.verdict import decide

OURS = "Grad++ScoreCAM"


def _frame(values: dict[str, dict[str, list[float]]], **config: str) -> pd.DataFrame:
    """Results rows from {method: {column: per-image values}}, images im0, im1, ... in order."""
    rows = []
    for method, columns in values.items():
        n = len(next(iter(columns.values())))
        for i in range(n):
            rows.append({"image_id": f"im{i}", "method": method, **{c: v[i] for c, v in columns.items()},
                         "model": "m", "score": "probability", **config})  # fmt: skip
    return pd.DataFrame(rows)


def _hand_frame() -> pd.DataFrame:
    return _frame({
        OURS: {"drop": [10, 20, 30, 40, 50, 60], "increase": [100, 100, 100, 0, 100, 100],
               "insertion_auc": [0.5, 0.6, 0.7, 0.8, 0.5, 0.4], "seconds": [1] * 6},
        "Score-CAM": {"drop": [12, 23, 31, 44, 55, 66], "increase": [0, 0, 100, 0, 0, 100],
                      "insertion_auc": [0.6, 0.7, 0.9, 0.9, 0.6, 0.6], "seconds": [4] * 6},
    })  # fmt: skip


def test_hand_made_frame_differences_tests_and_verdicts():
    table = compare(_hand_frame(), n_resamples=2000).set_index("metric")
    assert list(table["baseline"].unique()) == ["Score-CAM"]
    assert set(table.index) == {"drop", "increase", "insertion_auc", "seconds"}  # only the columns present

    drop = table.loc["drop"]  # d = [-2, -3, -1, -4, -5, -6]: every image says "lower"
    assert (drop["n"], drop["dropped"]) == (6, 0)
    assert drop["method_mean"] == 35.0 and drop["baseline_mean"] == 38.5 and drop["mean_difference"] == -3.5
    assert -6 <= drop["low"] <= drop["high"] <= -1  # every resample's mean lies between the extreme differences
    # exact signed-rank test, n = 6, all ranks negative: p = 2 * (1/2)^6
    assert drop["p_value"] == pytest.approx(2 / 64)
    assert drop["p_value"] == pytest.approx(wilcoxon([-2, -3, -1, -4, -5, -6]).pvalue)
    assert drop["test"] == "Wilcoxon signed-rank"
    assert drop["better"] is True  # lower Average Drop is better; interval below 0 and p < 0.05

    increase = table.loc["increase"]  # images 0, 1, 4: only ours increases; images 2 and 5 both; image 3 neither
    assert (increase["method_only"], increase["baseline_only"]) == (3, 0)
    assert increase["mean_difference"] == 50.0  # percentage points of Average Increase
    assert increase["p_value"] == pytest.approx(0.25)  # 3 discordant pairs, all ours: 2 * (1/2)^3
    assert increase["p_value"] == pytest.approx(binomtest(3, 3, 0.5).pvalue)
    assert increase["test"] == "exact McNemar"
    # the bootstrap's 2.5 % quantile is one discordant image in six (P(none drawn) = 1/64 < 2.5 %), so the
    # interval excludes 0, but three images cannot make McNemar's test significant: cannot tell
    assert increase["low"] == pytest.approx(100 / 6) and increase["better"] is None

    insertion = table.loc["insertion_auc"]  # higher is better, and ours is lower on every image
    d = np.array([0.5, 0.6, 0.7, 0.8, 0.5, 0.4]) - np.array([0.6, 0.7, 0.9, 0.9, 0.6, 0.6])
    assert insertion["mean_difference"] == pytest.approx(-0.8 / 6)
    assert insertion["p_value"] == pytest.approx(wilcoxon(d).pvalue) and insertion["p_value"] < 0.05
    assert insertion["high"] < 0 and insertion["better"] is False

    seconds = table.loc["seconds"]
    assert seconds["ratio"] == 0.25 and seconds["ratio_low"] == seconds["ratio_high"] == 0.25
    assert seconds["mean_difference"] == -3.0 and seconds["low"] == seconds["high"] == -3.0
    assert seconds["p_value"] == pytest.approx(wilcoxon([-3.0] * 6).pvalue)
    assert seconds["better"] is True
    assert math.isnan(table.loc["drop", "ratio"])


def test_small_n_cannot_tell_even_when_the_bootstrap_interval_excludes_zero():
    # two images, both 2 points lower: every resample's mean is negative, but the signed-rank p-value is 0.5
    df = _frame({OURS: {"drop": [10.0, 20.0]}, "Score-CAM": {"drop": [12.0, 22.0]}})
    row = compare(df).iloc[0]
    assert row["low"] == row["high"] == -2.0 and row["p_value"] == pytest.approx(0.5)
    assert row["better"] is None
    assert decide(-3.0, -1.0, 0.01, "lower") is True and decide(-3.0, -1.0, 0.01, "higher") is False
    assert decide(-3.0, -1.0, 0.2, "lower") is None and decide(-1.0, 1.0, 0.001, "lower") is None
    assert decide(math.nan, math.nan, math.nan, "lower") is None
    assert decide(-3.0, -1.0, 0.07, "lower", confidence=0.9) is True


def test_cross_check_against_scipy_on_random_pairs():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0, 60, 40), rng.uniform(0, 60, 40)
    a[:5] = b[:5]  # zero differences: discarded by the signed-rank test (zero_method="wilcox")
    hit_a, hit_b = rng.random(40) < 0.7, rng.random(40) < 0.4
    df = _frame({OURS: {"drop": list(a), "pointing_hit": list(hit_a.astype(float))},
                 "Grad-CAM++": {"drop": list(b), "pointing_hit": list(hit_b.astype(float))}})  # fmt: skip
    table = compare(df, n_resamples=3000, seed=7).set_index("metric")
    assert table.loc["drop", "p_value"] == pytest.approx(wilcoxon(a - b, zero_method="wilcox").pvalue)
    assert (table.loc["drop", "low"], table.loc["drop", "high"]) == pytest.approx(
        mean_confidence_interval(a - b, 0.95, 3000, 7)
    )
    only_a, only_b = int((hit_a & ~hit_b).sum()), int((~hit_a & hit_b).sum())
    assert (table.loc["pointing_hit", "method_only"], table.loc["pointing_hit", "baseline_only"]) == (only_a, only_b)
    assert table.loc["pointing_hit", "p_value"] == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    assert table.loc["pointing_hit", "mean_difference"] == pytest.approx(hit_a.mean() - hit_b.mean())


def test_paired_interval_excludes_zero_where_unpaired_intervals_overlap():
    # Image difficulty dominates (drops from 5 to 95 %), ours is 1 point lower on every image, give or take 0.5.
    rng = np.random.default_rng(0)
    base = np.linspace(5, 95, 20)
    ours = base - 1 + rng.uniform(-0.5, 0.5, 20)
    df = _frame({OURS: {"drop": list(ours)}, "Score-CAM": {"drop": list(base)}})
    row = compare(df, n_resamples=2000).iloc[0]
    low_a, high_a = mean_confidence_interval(ours, 0.95, 2000, 0)
    low_b, high_b = mean_confidence_interval(base, 0.95, 2000, 0)
    assert low_b < high_a and low_a < high_b  # the unpaired 95 % intervals overlap: "cannot tell" that way
    assert row["high"] < 0 and row["better"] is True  # the paired interval says ours is lower
    assert row["p_value"] < 1e-4


def test_pairs_matched_on_image_and_missing_values_dropped():
    df = _frame({
        OURS: {"drop": [10, 20, 30, 40, 50]},
        "Grad-CAM": {"drop": [11, math.nan, 32, 43, 54]},  # image 1 has no value
        "CAM": {"drop": [math.nan] * 5},  # not defined for this model
    })  # fmt: skip
    df = df[~((df["method"] == "Grad-CAM") & (df["image_id"] == "im4"))]  # and image 4 has no row at all
    df = df.sample(frac=1, random_state=0)  # row order must not matter: pairs are matched on image_id
    table = compare(df, n_resamples=1000).set_index("baseline")
    grad = table.loc["Grad-CAM"]
    assert (grad["n"], grad["dropped"]) == (3, 2)
    assert grad["mean_difference"] == pytest.approx(np.mean([10 - 11, 30 - 32, 40 - 43]))
    cam = table.loc["CAM"]
    assert (cam["n"], cam["dropped"]) == (0, 5)
    assert math.isnan(cam["low"]) and math.isnan(cam["p_value"]) and cam["better"] is None
    assert "at least 2" in cam["note"]
    assert list(table.index) == ["CAM", "Grad-CAM"]  # the paper's method order


def test_one_pair_gives_nan_with_a_note_not_an_error():
    df = _frame({OURS: {"drop": [10.0], "seconds": [1.0]}, "Score-CAM": {"drop": [20.0], "seconds": [2.0]}})
    table = compare(df).set_index("metric")
    assert table.loc["drop", "mean_difference"] == -10.0
    assert math.isnan(table.loc["drop", "low"]) and math.isnan(table.loc["drop", "p_value"])
    assert table.loc["drop", "better"] is None and "1 paired image" in table.loc["drop", "note"]
    assert table.loc["seconds", "ratio"] == 0.5 and math.isnan(table.loc["seconds", "ratio_low"])


def test_all_zero_differences_give_p_one():
    df = _frame({OURS: {"drop": [0, 0, 5]}, "Score-CAM": {"drop": [0, 0, 5]}})
    row = compare(df).iloc[0]
    assert row["p_value"] == 1.0 and row["low"] == row["high"] == 0.0 and row["better"] is None
    assert "every paired difference is 0" in row["note"]


def test_extra_metric_and_chosen_baselines():
    df = _frame({OURS: {"drop": [1] * 6, "objects_found": [1.0, 1.0, 0.5, 1.0, 0.5, 1.0]},
                 "Grad-CAM": {"drop": [1] * 6, "objects_found": [0.5, 0.5, 0.0, 0.5, 0.0, 0.5]},
                 "Score-CAM": {"drop": [1] * 6, "objects_found": [1.0] * 6}})  # fmt: skip
    table = compare(df, baselines=["Grad-CAM"], metrics={"objects_found": ("higher", "continuous")})
    assert list(table["baseline"].unique()) == ["Grad-CAM"]
    row = table.set_index("metric").loc["objects_found"]
    assert row["mean_difference"] == 0.5 and row["low"] == row["high"] == 0.5
    assert row["p_value"] == pytest.approx(wilcoxon([0.5] * 6).pvalue) and row["better"] is True
    with pytest.raises(ValueError, match="higher"):
        compare(df, metrics={"objects_found": ("up", "continuous")})
    with pytest.raises(ValueError, match=r"'objects_found' is compared as binary .* holds \[0.0, 0.5, 1.0\]"):
        compare(df, metrics={"objects_found": ("higher", "binary")})


def test_bad_input_is_named():
    df = _hand_frame()
    with pytest.raises(
        ValueError,
        match=r"baseline\(s\) \['Grad-CAM'\] not in the results; methods present: \['Score-CAM', 'Grad\+\+ScoreCAM'\]",
    ):
        compare(df, baselines=["Grad-CAM"])
    with pytest.raises(ValueError, match="method 'RISE' is not in the results; methods present"):
        compare(df, method="RISE")
    with pytest.raises(ValueError, match="its own baseline"):
        compare(df, baselines=[OURS])
    with pytest.raises(ValueError, match="empty"):
        compare(df.iloc[:0])
    mixed = df.copy()
    mixed.loc[mixed.index[:2], "score"] = "logit"
    with pytest.raises(ResultsMismatchError, match="score"):
        compare(mixed)
    with pytest.raises(ValueError, match="several rows for image 'im0'"):
        compare(pd.concat([df, df.iloc[:1]]))


def _verdict_table() -> pd.DataFrame:
    def row(baseline, metric, better, n=50, **extra):
        return {"baseline": baseline, "metric": metric, "n": n, "method_mean": 1.0, "baseline_mean": 2.0,
                "mean_difference": -1.0, "low": -1.5, "high": -0.5, "p_value": 0.01, "better": better, **extra}  # fmt: skip

    return pd.DataFrame([
        row("Grad-CAM++", "drop", True), row("Score-CAM", "drop", None, n=24), row("Grad-CAM++", "increase", False),
        row("Score-CAM", "increase", True), row("Score-CAM", "seconds", True, ratio=0.1, ratio_low=0.08, ratio_high=0.12),
    ])  # fmt: skip


def test_claim_verdicts_read_better():
    verdicts = claim_verdicts(_verdict_table())
    assert list(verdicts["verdict"]) == ["holds", "cannot tell at N = 24", "fails", "holds", "holds"]
    assert verdicts.loc[4, "claim"] == "Grad++ScoreCAM is faster than Score-CAM" and verdicts.loc[4, "ratio"] == 0.1
    assert verdicts.loc[0, "mean_difference"] == -1.0 and verdicts.loc[0, "n"] == 50


def test_claim_verdicts_say_what_was_not_measured():
    verdicts = claim_verdicts(_verdict_table().iloc[:1])
    assert verdicts.loc[0, "verdict"] == "holds"
    assert verdicts.loc[1, "verdict"].startswith("not measured (Score-CAM or drop")


def test_claim_verdicts_from_compare_end_to_end():
    df = _frame({OURS: {"drop": [10, 20, 30, 40, 50, 60], "increase": [100, 0, 0, 0, 0, 0], "seconds": [1] * 6},
                 "Grad-CAM++": {"drop": [12, 23, 31, 44, 55, 66], "increase": [100, 0, 0, 0, 0, 0], "seconds": [0.1] * 6},
                 "Score-CAM": {"drop": [9, 18, 27, 36, 45, 54], "increase": [0] * 6, "seconds": [4] * 6}})  # fmt: skip
    verdicts = claim_verdicts(compare(df, n_resamples=1000)).set_index("claim")["verdict"]
    assert verdicts.tolist() == ["holds", "fails", "cannot tell at N = 6", "cannot tell at N = 6", "holds"]


def test_command_line_prints_and_writes_the_same_numbers(tmp_path, capsys):
    from gradscorecam.verdict import main

    path = tmp_path / "results.csv"
    _hand_frame().to_csv(path, index=False)
    assert main([str(path), "--n-resamples", "2000", "--output", str(tmp_path / "verdict.csv")]) == 0
    printed = capsys.readouterr().out
    written = pd.read_csv(tmp_path / "verdict.csv").set_index("metric")
    assert written.loc["drop", "mean_difference"] == -3.5 and written.loc["drop", "p_value"] == pytest.approx(2 / 64)
    claims = pd.read_csv(tmp_path / "verdict.claims.csv").set_index("claim")
    assert claims.loc["Grad++ScoreCAM has a lower Average Drop than Score-CAM", "verdict"] == "holds"
    assert "6 images" in printed and "holds" in printed
