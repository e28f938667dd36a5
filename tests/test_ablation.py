"""The ablation's bookkeeping: configurations, Pareto front, ranking, claims; and one tiny end-to-end run."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from conftest import random_image_records, tiny_spec

import gradscorecam
from gradscorecam import GradPlusPlusScoreCAM, ablation
from gradscorecam.verdict import paired_comparison


def test_sixteen_readings_default_first():
    readings = ablation.readings()
    assert len(readings) == 16 and len({ablation.reading_label(r) for r in readings}) == 16
    defaults = GradPlusPlusScoreCAM(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)), "0").options()
    assert readings[0] == {k: defaults[k] for k in ablation.CHOICES}


def test_configs_cover_readings_and_budgets_without_duplicates():
    configs = ablation.ablation_configs([16, 64, None], reading_budget=64)
    labels = [c.label for c in configs]
    assert len(labels) == len(set(labels)) == 16 + 2  # 64 for the default reading is already there
    assert "activation/input/zeros/score @ 16" in labels and "activation/input/zeros/score @ all" in labels
    assert configs[0].options() == {**ablation.readings()[0], "max_channels": 64}
    assert configs[0].slug == "activation-input-zeros-score-64"


def _table() -> pd.DataFrame:
    rows = [
        # config, method, AD, AI, deletion, insertion, seconds
        ("a @ 16", "Grad++ScoreCAM", 30.0, 40.0, 0.10, 0.60, 1.0),
        ("b @ 64", "Grad++ScoreCAM", 20.0, 50.0, 0.08, 0.70, 4.0),
        ("c @ 64", "Grad++ScoreCAM", 25.0, 45.0, 0.12, 0.50, 5.0),  # slower and worse than b: dominated
        ("Grad-CAM++", "Grad-CAM++", 35.0, 30.0, 0.11, 0.55, 0.1),
        ("Score-CAM", "Score-CAM", 22.0, 48.0, 0.09, 0.65, 40.0),
    ]
    table = pd.DataFrame(rows, columns=["config", "method", "average_drop", "average_increase", "deletion_auc",
                                        "insertion_auc", "seconds_per_image"])  # fmt: skip
    table["layer"] = "head"
    for name in ablation.QUALITY:
        table[f"{name}_low"], table[f"{name}_high"] = table[name] - 1, table[name] + 1
    # the paired comparisons run_ablation stores for Grad++ScoreCAM rows: (low, high) of the mean difference
    paired = {
        "a @ 16": {"AD < Grad-CAM++": (-8, -2), "AD < Score-CAM": (3, 9), "AI > Score-CAM": (-10, 5)},
        "b @ 64": {"AD < Grad-CAM++": (-20, -10), "AD < Score-CAM": (-3, 1), "AI > Score-CAM": (1, 4)},
        "c @ 64": {"AD < Grad-CAM++": (-12, -8), "AD < Score-CAM": (1, 5), "AI > Score-CAM": (-6, -1)},
    }
    for config, claims in paired.items():
        at = table.index[table["config"] == config][0]
        for claim, (low, high) in {
            **claims,
            "AI > Grad-CAM++": (math.nan, math.nan),
            "faster than Score-CAM": (-40, -30),
        }.items():
            table.loc[at, [f"{claim} difference", f"{claim} low", f"{claim} high", f"{claim} p", f"{claim} n"]] = [
                (low + high) / 2,
                low,
                high,
                0.01,
                1 if claim == "AI > Grad-CAM++" else 30,
            ]
    return table


def test_pareto_front_by_hand():
    table = _table()
    ours = table[table["method"] == "Grad++ScoreCAM"]
    assert ablation.pareto_front(ours, "average_drop", higher_is_better=False).tolist() == [True, True, False]
    assert ablation.pareto_front(table, "average_drop", False).tolist() == [True, True, False, True, False]
    assert ablation.pareto_front(table, "average_increase", True).tolist() == [True, True, False, True, False]


def test_rank_configs_by_mean_rank_within_a_time_limit():
    ranked = ablation.rank_configs(_table())
    assert list(ranked["config"]) == ["b @ 64", "a @ 16", "c @ 64"]
    assert ranked.iloc[0]["mean_rank"] == 1.0  # b is best on all four metrics
    assert list(ablation.rank_configs(_table(), max_seconds=2.0)["config"]) == ["a @ 16"]


def test_claims_read_the_paired_intervals():
    verdicts = ablation.claims(_table()).set_index("config")
    assert list(verdicts.index) == ["a @ 16", "b @ 64", "c @ 64"]  # Grad++ScoreCAM rows only
    # AD: lower is better, so an interval below 0 holds, above 0 fails, around 0 cannot tell
    assert verdicts.loc["b @ 64", "AD < Grad-CAM++"] == "holds"
    assert verdicts.loc["a @ 16", "AD < Score-CAM"] == "fails"
    assert verdicts.loc["b @ 64", "AD < Score-CAM"] == "cannot tell at N = 30"
    # AI: higher is better
    assert verdicts.loc["b @ 64", "AI > Score-CAM"] == "holds"
    assert verdicts.loc["c @ 64", "AI > Score-CAM"] == "fails"
    assert verdicts.loc["a @ 16", "AI > Score-CAM"] == "cannot tell at N = 30"
    assert verdicts.loc["a @ 16", "AI > Grad-CAM++"] == "cannot tell at N = 1"  # one pair: NaN interval
    assert (verdicts["faster than Score-CAM"] == "holds").all()
    # the paired interval decides, not the unpaired rule: b's AI 50 [49, 51] and Score-CAM's 48 [47, 49] overlap
    # (the old rule's plain "yes"), and the paired interval [1, 4] says it holds
    table = _table()
    assert table.loc[1, "average_increase_low"] <= table.loc[4, "average_increase_high"]
    # a claim whose comparison is missing (its baseline not run) is left out
    without = ablation.claims(table.drop(columns=[c for c in table if c.startswith("AD < Score-CAM")]))
    assert without.columns.tolist() == ["layer", "config", "AD < Grad-CAM++", "AI > Grad-CAM++", "AI > Score-CAM",
                                        "faster than Score-CAM"]  # fmt: skip


def test_default_layers_adds_a_known_inner_layer(vgg_net):
    assert ablation.default_layers(tiny_spec(vgg_net, "features.4", "alexnet-like")) == ["features.4"]  # no features.9
    assert ablation.default_layers(tiny_spec(vgg_net, "features", "mobilenet_v2 test")) == ["features"]
    vgg_net.features.add_module("9", torch.nn.ReLU())
    assert ablation.default_layers(tiny_spec(vgg_net, "features.4", "alexnet-like")) == ["features.4", "features.9"]


def test_run_ablation_end_to_end(gap_net, tmp_path):
    paths = random_image_records(tmp_path, 2)
    spec = tiny_spec(gap_net, "layer")
    configs = ablation.ablation_configs([4], reading_budget=None)[:2] + [ablation.Config(ablation.readings()[0], 4)]
    table = ablation.run_ablation(spec, paths, configs, tmp_path / "out", layer="block", deletion_steps=4,
                                  progress=False)  # fmt: skip
    assert list(table["config"]) == [c.label for c in configs] + ["Grad-CAM++", "Score-CAM"]
    assert "note" not in table or table["note"].isna().all()  # "block" is an inner layer: every config computed
    assert (table["n_images"] == 2).all() and table["average_drop"].between(0, 100).all()
    assert table.loc[2, "max_channels"] == 4 and table.loc[0, "max_channels"] == "all"
    # rerunning resumes: the same numbers, nothing recomputed
    again = ablation.run_ablation(spec, paths, configs, tmp_path / "out", layer="block", deletion_steps=4,
                                  progress=False)  # fmt: skip
    timed = ["seconds_per_image", *[c for c in table if c.startswith("faster than")]]
    pd.testing.assert_frame_equal(table.drop(columns=timed), again.drop(columns=timed))
    # Random weights: every masked input scores below the all-zero input (p = 0.1285 against Y = 0.1274), so
    # alpha_k <= 0 for every channel and Grad++ScoreCAM's maps are zero everywhere; the table counts them and
    # leaves them out of the map metrics. Grad-CAM++ has real maps, with a deletion/insertion value.
    assert (table.loc[:2, "degenerate_maps"] == 2).all() and math.isnan(table.loc[0, "insertion_auc"])
    assert table.loc[3, "degenerate_maps"] == 0 and 0 <= table.loc[3, "insertion_auc"] <= 1
    # the paired claims are gradscorecam.verdict's on the per-image rows of the two results files
    folder = tmp_path / "out" / "block"
    ours = gradscorecam.read_results(folder / f"{configs[0].slug}.csv")
    baselines = gradscorecam.read_results(folder / "baselines.csv")
    expected = paired_comparison(ours, baselines[baselines["method"] == "Score-CAM"], {"drop": ("lower", "continuous")})
    assert table.loc[0, "AD < Score-CAM n"] == 2
    assert table.loc[0, "AD < Score-CAM difference"] == pytest.approx(expected.loc[0, "mean_difference"])
    assert table.loc[0, "AD < Score-CAM low"] == pytest.approx(expected.loc[0, "low"])
    assert math.isnan(table.loc[3, "AD < Score-CAM low"])  # baseline rows carry no claims
    verdicts = ablation.claims(table)
    assert len(verdicts) == 3 and set(verdicts.columns) >= {
        "AD < Grad-CAM++",
        "AI > Score-CAM",
        "faster than Score-CAM",
    }


def test_gap_layer_twins_are_not_recomputed(gap_net, tmp_path):
    records = random_image_records(tmp_path, 1)
    spec = tiny_spec(gap_net, "layer")
    assert ablation.followed_by_gap_linear(spec, "layer", size=16)
    assert not ablation.followed_by_gap_linear(spec, "block", size=16)
    # without the zeros baseline: with these random weights it makes every alpha_k <= 0 and every map zero,
    # and two all-zero maps would agree whatever the mask source
    reading = {**ablation.readings()[0], "baseline": None}
    activation = ablation.Config(reading, 4)
    gradient = ablation.Config({**reading, "mask_source": "gradient"}, 4)
    table = ablation.run_ablation(spec, records, [activation, gradient], tmp_path / "out", layer="layer",
                                  baselines=(), deletion_steps=4, progress=False)  # fmt: skip
    assert table.loc[1, "note"].startswith("identical by construction to activation/input/None/score @ 4")
    assert (table["degenerate_maps"] == 0).all()
    assert table.loc[1, "mask_source"] == "gradient"
    # and it is true: computing the gradient reading gives the same numbers
    computed = ablation.run_ablation(spec, records, [gradient], tmp_path / "out2", layer="layer", baselines=(),
                                     deletion_steps=4, progress=False)  # fmt: skip
    for name in ("average_drop", "average_increase", "deletion_auc", "insertion_auc"):
        assert computed.loc[0, name] == pytest.approx(table.loc[0, name], abs=1e-5)


def test_indistinguishable_needs_each_mean_inside_the_others_interval_on_every_metric():
    def row(config, value, half):
        return {
            "config": config,
            **{k: value for k in ablation.QUALITY},
            **{f"{k}_low": value - half for k in ablation.QUALITY},
            **{f"{k}_high": value + half for k in ablation.QUALITY},
        }

    table = pd.DataFrame([row("a", 1.0, 0.5), row("b", 1.4, 0.5), row("c", 1.4, 0.1)])
    assert ablation.indistinguishable(table, "a", "b")
    assert not ablation.indistinguishable(table, "a", "c")  # c's mean is in a's interval, not a's in c's
    table.loc[1, "insertion_auc"] = 2.0  # one metric apart is enough
    assert not ablation.indistinguishable(table, "a", "b")
