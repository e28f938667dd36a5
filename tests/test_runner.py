"""The evaluation runner: rows, resume after a crash, configuration checks, shards, Parquet, summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import small_gap_net, small_vgg_net
from PIL import Image
from torchvision import transforms as T

import gradscorecam.results as results
import gradscorecam.runner as runner
from gradscorecam import evaluate, merge_results, read_results, summarize
from gradscorecam.datasets import ImageRecord, read_image_list
from gradscorecam.errors import ResultsMismatchError
from gradscorecam.models import ModelSpec
from gradscorecam.summary import mean_confidence_interval

METHODS = ["Grad-CAM", "Score-CAM"]
TIMING = ["seconds", "metric_seconds"]
pytestmark = pytest.mark.usefixtures("one_thread")


TRANSFORM = T.Compose([T.Resize(24), T.CenterCrop(24), T.ToTensor(), T.Normalize([0.5] * 3, [0.25] * 3)])


def _spec(net: torch.nn.Module | None = None, layer: str = "layer") -> ModelSpec:
    return ModelSpec(
        net or small_gap_net(), TRANSFORM, layer, tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3, "toy", "test-weights"
    )


@pytest.fixture
def records(tmp_path: Path) -> list[ImageRecord]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(5):
        path = tmp_path / "images" / f"im{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(path)
        boxes = ((4, 2, 20, 25),) if i % 2 == 0 else ()
        out.append(ImageRecord(f"im{i}", path, i, boxes))
    return out


def _stable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=TIMING).sort_values(["image_id", "method"]).reset_index(drop=True)


def _run(records: list[ImageRecord], out: Path, **kwargs: object) -> pd.DataFrame:
    options = dict(deletion_steps=4, progress=False, batch_size=8)
    options.update(kwargs)
    return evaluate(_spec(), records, METHODS, out, **options)  # type: ignore[arg-type]


def test_rows_hold_metrics_and_configuration(records: list[ImageRecord], tmp_path: Path):
    df = _run(records, tmp_path / "r.csv")
    assert len(df) == 10 and list(df.columns) == list(results.COLUMNS)
    row = df[(df.image_id == "im0") & (df.method == "Grad-CAM")].iloc[0]
    assert row["drop"] == pytest.approx(max(0.0, row.Y - row.O) / row.Y * 100)
    assert row.increase == (100.0 if row.O > row.Y else 0.0)
    assert 0 <= row.deletion_auc <= 1 and 0 <= row.insertion_auc <= 1
    assert row.pointing_hit in (0.0, 1.0) and 0 <= row.energy_pointing <= 1  # im0 has a box
    assert np.isnan(df[df.image_id == "im1"].pointing_hit).all()  # im1 has none
    assert row.class_index == row.predicted  # explains the predicted class by default
    assert (row.model, row.weights, row.score, row.masking, row.top_percent) == (
        "toy",
        "test-weights",
        "probability",
        "normalized",
        "off",
    )
    assert row.deletion_steps == 4 and row.target_layer == "layer" and row.device == "cpu"
    assert read_image_list(tmp_path / "r.images.csv") == [f"im{i}" for i in range(5)]
    sidecar = json.loads((tmp_path / "r.csv.config.json").read_text())
    assert sidecar["score"] == "probability" and sidecar["model"] == "toy"


def test_resume_after_a_crash_gives_the_rows_of_an_uninterrupted_run(records, tmp_path, monkeypatch):
    full = _run(records, tmp_path / "full.csv")

    real = runner._evaluate_one
    calls = {"n": 0}

    def crash_after_k_images(*args: object, **kwargs: object) -> dict:
        calls["n"] += 1
        if calls["n"] > 2 * 2:  # k = 2 images of 2 methods, then the "kill"
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_evaluate_one", crash_after_k_images)
    with pytest.raises(KeyboardInterrupt):
        _run(records, tmp_path / "resumed.csv")
    assert len(read_results(tmp_path / "resumed.csv")) == 4
    monkeypatch.setattr(runner, "_evaluate_one", real)
    resumed = _run(records, tmp_path / "resumed.csv")
    assert not resumed.duplicated(["image_id", "method"]).any()
    pd.testing.assert_frame_equal(_stable(resumed), _stable(full))
    # a third run has nothing left to do and changes nothing
    pd.testing.assert_frame_equal(_stable(_run(records, tmp_path / "resumed.csv")), _stable(full))


def test_torn_last_line_is_dropped_and_redone(records, tmp_path):
    out = tmp_path / "torn.csv"
    full = _run(records, out)
    text = out.read_text()
    lines = text.splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:25])  # a crash in the middle of writing the last row
    torn = out.read_bytes()
    assert len(read_results(out)) == len(full) - 1 and out.read_bytes() == torn  # readers only skip it
    resumed = _run(records, out)
    pd.testing.assert_frame_equal(_stable(resumed), _stable(full))
    assert out.read_text().count("\n") == len(lines)


def test_other_configuration_is_refused_naming_keys(records, tmp_path):
    out = tmp_path / "r.csv"
    _run(records[:2], out)
    with pytest.raises(ResultsMismatchError, match=r"score: stored 'probability', now 'logit'.*another out_path"):
        _run(records[:2], out, score="logit")
    with pytest.raises(ResultsMismatchError, match="deletion_steps"):
        _run(records[:2], out, deletion_steps=5)
    (tmp_path / "r.csv.config.json").unlink()  # the rows carry the configuration too
    with pytest.raises(ResultsMismatchError, match="masking"):
        _run(records[:2], out, masking="pixel")
    df = _run(records[:2], out, score="logit", overwrite=True)
    assert len(df) == 4 and set(df.score) == {"logit"}
    # adding images or a method to the same configuration is a resume, not a mismatch
    more = evaluate(_spec(), records[:3], ["Grad-CAM", "Score-CAM", "Grad-CAM++"], out, score="logit",
                    deletion_steps=4, progress=False, batch_size=8)  # fmt: skip
    assert len(more) == 9


def test_effective_explainer_options_are_recorded_defaults_included(records, tmp_path):
    from gradscorecam.version import library_version

    df = evaluate(_spec(), records[:2], ["Grad-CAM", "Grad++ScoreCAM"], tmp_path / "r.csv", deletion_steps=0,
                  progress=False, batch_size=8)  # fmt: skip
    recorded = {
        m: json.loads(o) for m, o in zip(df.method, df.explainer_options, strict=True)
    }  # each row: its method's
    # nothing was passed, yet the rows say which reading and budget ran (the class's documented defaults)
    gpp = recorded["Grad++ScoreCAM"]
    assert (gpp["max_channels"], gpp["mask_source"], gpp["perturb"], gpp["baseline"], gpp["combine"]) == (
        64,
        "activation",
        "input",
        "zeros",
        "score",
    )
    assert "batch_size" not in gpp and "progress" not in gpp  # how the work is chunked, not what ran
    assert set(recorded) == {"Grad-CAM", "Grad++ScoreCAM"}
    sidecar = json.loads((tmp_path / "r.csv.config.json").read_text())
    assert sidecar["explainer_options"] == recorded
    # the version is provenance on every row, not part of the configuration
    assert set(df.library_version) == {library_version()} and "library_version" not in sidecar


def test_resuming_after_a_default_changed_names_the_option(records, tmp_path, monkeypatch):
    from gradscorecam.explainers import GradPlusPlusScoreCAM

    out = tmp_path / "r.csv"
    evaluate(_spec(), records[:2], ["Grad++ScoreCAM"], out, deletion_steps=0, progress=False)
    # a later version of the library changes Grad++ScoreCAM's default budget; nobody passes max_channels
    monkeypatch.setattr(GradPlusPlusScoreCAM, "default_max_channels", 8)
    with pytest.raises(
        ResultsMismatchError, match=r"explainer option Grad\+\+ScoreCAM\.max_channels: stored 64, now 8"
    ):
        evaluate(_spec(), records[:3], ["Grad++ScoreCAM"], out, deletion_steps=0, progress=False)
    (tmp_path / "r.csv.config.json").unlink()  # the rows carry the options too
    with pytest.raises(ResultsMismatchError, match=r"Grad\+\+ScoreCAM\.max_channels: stored 64, now 8"):
        evaluate(_spec(), records[:3], ["Grad++ScoreCAM"], out, deletion_steps=0, progress=False)


def test_another_library_version_resumes(records, tmp_path, monkeypatch):
    out = tmp_path / "r.csv"
    evaluate(_spec(), records[:2], ["Grad-CAM"], out, deletion_steps=0, progress=False)
    monkeypatch.setattr(runner, "library_version", lambda: "0.1.0+gdeadbeef0000.dirty")
    df = evaluate(_spec(), records[:3], ["Grad-CAM"], out, deletion_steps=0, progress=False)
    assert len(df) == 3 and df.library_version.tolist()[-1] == "0.1.0+gdeadbeef0000.dirty"
    assert df.library_version.nunique() == 2 and len(summarize(df)) == 1  # one configuration, two commits


def test_all_zero_maps_are_noted_and_counted(records, tmp_path):
    net = small_gap_net()
    with torch.no_grad():
        net.fc.weight.copy_(-net.fc.weight.abs())  # every class score falls with every (ReLU, >= 0) activation
    spec = _spec(net)
    df = evaluate(spec, records, ["Grad-CAM"], tmp_path / "r.csv", deletion_steps=4, progress=False)
    # Grad-CAM's weights are W_ck / hw < 0 for every channel: ReLU(sum_k w_k A^k) is zero everywhere
    assert df.note.str.startswith("all-zero map").all()
    assert df.deletion_auc.isna().all() and df.insertion_auc.isna().all() and df.pointing_hit.isna().all()
    # Y and O stay: E = X * 0 is the all-zero input, so O is the model's probability of the class on zeros
    images = torch.stack([TRANSFORM(Image.open(r.path).convert("RGB")) for r in records])
    with torch.no_grad():
        on_zeros = torch.softmax(net(torch.zeros_like(images)), 1)[
            torch.arange(5), torch.tensor(df.class_index.tolist())
        ]
    assert df.O.to_numpy() == pytest.approx(on_zeros.double().numpy(), rel=1e-5)
    assert df["drop"].notna().all()
    summary = summarize(df).loc["Grad-CAM"]
    assert summary.degenerate_maps == 5 and summary.average_drop_n == 5 and summary.undefined_drop == 0
    assert "deletion_auc" not in summary.index  # no image has a defined value


def test_shards_merge_to_the_full_run(records, tmp_path):
    full = _run(records, tmp_path / "full.csv")
    shards = [_run(records, tmp_path / f"s{i}.csv", shard_index=i, num_shards=2) for i in range(2)]
    assert sorted(shards[0].image_id.unique()) == ["im0", "im2", "im4"]
    merged = merge_results([tmp_path / "s0.csv", tmp_path / "s1.csv"])
    pd.testing.assert_frame_equal(_stable(merged), _stable(full))
    _run(records[:1], tmp_path / "other.csv", masking="pixel")
    with pytest.raises(ResultsMismatchError, match="masking"):
        merge_results([tmp_path / "s0.csv", tmp_path / "other.csv"])
    with pytest.raises(ResultsMismatchError, match="share"):
        merge_results([tmp_path / "s0.csv", tmp_path / "full.csv"])
    # a shard whose Score-CAM ran with another budget is another method under the same name
    _run(records[1:2], tmp_path / "budget.csv", explainer_options={"Score-CAM": {"max_channels": 4}})
    with pytest.raises(
        ResultsMismatchError, match=r"explainer options for Score-CAM \(explainer option Score-CAM\.max_channels"
    ):
        merge_results([tmp_path / "s0.csv", tmp_path / "budget.csv"])


def test_parquet_output_resumes(records, tmp_path, monkeypatch):
    out = tmp_path / "r.parquet"
    real = runner._evaluate_one
    calls = {"n": 0}

    def crash(*args: object, **kwargs: object) -> dict:
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_evaluate_one", crash)
    with pytest.raises(RuntimeError):
        _run(records, out)
    monkeypatch.setattr(runner, "_evaluate_one", real)
    df = _run(records, out)
    assert len(df) == 10 and out.is_file() and not (tmp_path / "r.parquet.journal.csv").exists()
    pd.testing.assert_frame_equal(_stable(pd.read_parquet(out)), _stable(df))


def test_cam_on_a_vgg_like_model_gives_a_noted_row(records, tmp_path):
    spec = _spec(small_vgg_net(), "features.4")
    df = evaluate(spec, records[:2], ["CAM", "Grad-CAM"], tmp_path / "vgg.csv", deletion_steps=0, progress=False)
    cam = df[df.method == "CAM"]
    assert len(cam) == 2 and cam.Y.isna().all() and cam.note.str.contains("not defined for this model").all()
    assert df[df.method == "Grad-CAM"].Y.notna().all() and df.deletion_auc.isna().all()


def test_unreadable_image_stops_the_run_naming_the_file(records, tmp_path):
    from gradscorecam.errors import DataSourceError

    records[2].path.write_bytes(b"broken")
    with pytest.raises(DataSourceError, match="im2.png"):
        _run(records, tmp_path / "r.csv")
    assert len(read_results(tmp_path / "r.csv")) == 4  # the images before it are kept; fix it and rerun


def test_an_input_with_nan_stops_the_run_naming_the_image(records, tmp_path):
    from gradscorecam.errors import InputImageError

    def poisoned(image: Image.Image) -> torch.Tensor:  # a transform that breaks on one image
        tensor = TRANSFORM(image)
        if image.size == (41, 30):
            tensor[0, 3, 3] = float("nan")
        return tensor

    Image.open(records[3].path).resize((41, 30)).save(records[3].path)
    spec = ModelSpec(small_gap_net(), poisoned, "layer", tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3, "toy", "w")
    with pytest.raises(InputImageError, match=r"image im3 \(.*im3.png\): the images passed to the explainer hold NaN"):
        evaluate(spec, records, METHODS, tmp_path / "r.csv", deletion_steps=4, progress=False, batch_size=8)
    assert sorted(set(read_results(tmp_path / "r.csv")["image_id"])) == ["im0", "im1", "im2"]


def test_label_target_and_random_weights_warning(records, tmp_path):
    spec = ModelSpec(small_gap_net(), TRANSFORM, "layer", tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3, "toy",
                     "random (weights=None, torch seed 0)")  # fmt: skip
    with pytest.warns(UserWarning, match="random weights"):
        df = evaluate(spec, records, ["Grad-CAM"], tmp_path / "r.csv", target_class="label", deletion_steps=0,
                      progress=False)  # fmt: skip
    assert df.class_index.tolist() == [0, 1, 2, 3, 4] and set(df.weights) == {"random (weights=None, torch seed 0)"}


# ---------------------------------------------------------------------------------------------- summary
def _frame(method_values: dict[str, list[float]], **config: object) -> pd.DataFrame:
    rows = []
    for method, drops in method_values.items():
        for i, drop in enumerate(drops):
            rows.append({"image_id": f"im{i}", "method": method, "drop": drop, "increase": 100.0 * (drop == 0),
                         "seconds": 0.5 * (i + 1), "note": "", "model": "toy", **config})  # fmt: skip
    return pd.DataFrame(rows)


def test_summary_means_intervals_and_seconds():
    df = _frame({"Score-CAM": [0.0, 50.0, 100.0], "Grad-CAM": [20.0, 20.0, 20.0]})
    summary = summarize(df)
    assert list(summary.index) == ["Grad-CAM", "Score-CAM"]  # the paper's column order
    score = summary.loc["Score-CAM"]
    assert score.average_drop == pytest.approx(50.0) and score.average_increase == pytest.approx(100 / 3)
    assert 0.0 <= score.average_drop_low < 50.0 < score.average_drop_high <= 100.0
    assert score.average_drop_n == 3 and score.seconds_per_image == pytest.approx(1.0)
    grad = summary.loc["Grad-CAM"]
    assert (grad.average_drop_low, grad.average_drop, grad.average_drop_high) == (20.0, 20.0, 20.0)
    assert "deletion_auc" not in summary.columns  # no values at all: left out
    # a method's interval depends on its own values only, not on the other methods in the table
    same = summarize(_frame({"Score-CAM": [0.0, 50.0, 100.0], "Grad++ScoreCAM": [0.0, 50.0, 100.0]}))
    assert same.loc["Score-CAM"].equals(same.loc["Grad++ScoreCAM"])
    assert same.loc["Score-CAM"].equals(score)


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    values = np.random.default_rng(1).normal(10, 2, 200)
    low, high = mean_confidence_interval(values, rng=0)
    assert (low, high) == mean_confidence_interval(values, rng=0)
    # the normal-theory 95 % interval is mean +- 1.96 * sd / sqrt(n); the bootstrap's is close to it
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert low == pytest.approx(values.mean() - half, abs=0.1) and high == pytest.approx(values.mean() + half, abs=0.1)
    assert all(np.isnan(mean_confidence_interval(np.array([1.0]))))


def test_summary_refuses_mixed_configurations():
    df = pd.concat([_frame({"Grad-CAM": [1.0, 2.0]}, score="probability"), _frame({"Grad-CAM": [1.0]}, score="logit")])
    with pytest.raises(ResultsMismatchError, match="score"):
        summarize(df)


def test_command_line_runs_resumes_and_summarises(records, tmp_path, capsys):
    import importlib.util

    from test_models import _external

    spec = importlib.util.spec_from_file_location("evaluate_cli", Path(__file__).parents[1] / "scripts" / "evaluate.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)  # type: ignore[union-attr]
    labels = tmp_path / "labels.csv"
    labels.write_text("file,class_index\n" + "".join(f"{r.path},{r.class_index % 3}\n" for r in records))
    args = ["--model", str(_external(tmp_path)), "--labels-csv", str(labels), "--n", "3", "--methods", "Grad-CAM",
            "CAM", "--deletion-steps", "0", "--device", "cpu", "--out", str(tmp_path / "cli.csv")]  # fmt: skip
    assert cli.main(args) == 0
    first = read_results(tmp_path / "cli.csv")
    assert len(first) == 6 and set(first.model) == {"toy"}
    assert cli.main(args) == 0  # resumes: nothing to add
    assert len(read_results(tmp_path / "cli.csv")) == 6
    summary = pd.read_csv(tmp_path / "cli.summary.csv", index_col="method")
    assert list(summary.index) == ["CAM", "Grad-CAM"] and (summary.n_images == 3).all()
    assert "average_drop" in capsys.readouterr().out
    # the layer and the budget are options; the budget is recorded with the effective options of the method
    other = args[:4] + ["--n", "2", "--methods", "Grad++ScoreCAM", "--layer", "0", "--max-channels", "2",
                        "--deletion-steps", "0", "--device", "cpu", "--out", str(tmp_path / "cli2.csv")]  # fmt: skip
    assert cli.main(other) == 0
    rows = read_results(tmp_path / "cli2.csv")
    assert set(rows.target_layer) == {"0"} and {json.loads(o)["max_channels"] for o in rows.explainer_options} == {2}
    assert cli.channel_budget("all") == "all" and cli.channel_budget("16") == 16
    for bad in ("0", "many"):
        with pytest.raises(Exception, match="neither a positive number of channels nor 'all'"):
            cli.channel_budget(bad)


# ------------------------------------------------------------------------------- per-object scores
def _two_object_records(records: list[ImageRecord]) -> list[ImageRecord]:
    """The fixture's images, each with two boxes of its class (on the 30 x 40 image; the 24 x 24 input keeps both)."""
    return [ImageRecord(r.image_id, r.path, r.class_index, ((8, 2, 18, 14), (22, 14, 32, 28))) for r in records]


def test_per_object_scores_are_those_of_the_map_with_the_mapped_boxes(records, tmp_path):
    from gradscorecam.datasets.records import load_batch
    from gradscorecam.explainers import make_explainer
    from gradscorecam.metrics import object_scores

    several = _two_object_records(records)
    spec = _spec()
    df = evaluate(spec, several, ["Grad-CAM"], tmp_path / "r.csv", target_class="label", deletion_steps=0,
                  progress=False)  # fmt: skip
    explainer = make_explainer("Grad-CAM", spec.model, "layer")
    for record in several:
        images, boxes = load_batch([record], spec.transform)
        assert len(boxes[0]) == 2
        expected = object_scores(explainer(images, targets=[record.class_index]), boxes[0])
        row = df[df.image_id == record.image_id].iloc[0]
        if results.DEGENERATE_NOTE in row.note:  # an all-zero map finds nothing (the pointing games are NaN)
            assert row.objects_found == 0 and np.isnan(row.min_object_energy) and np.isnan(row.pointing_hit)
            continue
        assert row.objects_found == pytest.approx(expected.found.mean())
        assert row.min_object_energy == pytest.approx(float(expected.energy.min()))
    assert df.note.str.contains(results.DEGENERATE_NOTE).any()  # the branch above is taken
    assert df.objects_found.notna().all() and df.objects_found.nunique() >= 2
    # one box is a pointing game, not "every object": no per-object score
    single = evaluate(spec, records, ["Grad-CAM"], tmp_path / "one.csv", target_class="label", deletion_steps=0,
                      progress=False)  # fmt: skip
    assert single.objects_found.isna().all() and single.pointing_hit[single.image_id == "im0"].notna().all()


def test_per_object_scores_only_when_the_explained_class_is_the_labelled_one(records, tmp_path):
    from gradscorecam.datasets.records import load_batch

    spec = _spec()
    several = []
    for i, record in enumerate(_two_object_records(records)):  # labelled as predicted for even images only
        with torch.no_grad():
            predicted = int(spec.model(load_batch([record], spec.transform)[0]).argmax(1))
        several.append(ImageRecord(record.image_id, record.path, predicted if i % 2 == 0 else (predicted + 1) % 10,
                                   record.boxes))  # fmt: skip
    df = evaluate(spec, several, ["Grad-CAM"], tmp_path / "r.csv", deletion_steps=0, progress=False)
    other = df.class_index != df.label
    assert other.tolist() == [False, True, False, True, False]
    assert df.loc[other, "objects_found"].isna().all() and df.loc[other, "min_object_energy"].isna().all()
    assert df.loc[other, "note"].str.contains("not the labelled one").all()
    assert df.loc[~other, "objects_found"].notna().all()
    assert df.loc[other, "pointing_hit"].notna().all()  # the pointing games keep the true class's boxes


def test_a_file_of_an_older_library_is_continued_with_the_new_columns(records, tmp_path):
    out = tmp_path / "r.csv"
    done = _run(records[:2], out)
    before = done.drop(columns=["objects_found", "min_object_energy"])
    before[list(before.columns[::-1])].to_csv(out, index=False)  # an older library's columns, in another order
    df = _run(records, out)
    assert out.read_text().splitlines()[0] == ",".join(results.COLUMNS)  # rewritten once, then appended to
    assert _stable(df).equals(_stable(_run(records, tmp_path / "fresh.csv")))


def test_a_file_with_unknown_columns_is_not_continued(records, tmp_path):
    out = tmp_path / "r.csv"
    _run(records[:2], out).assign(mystery=1.0).to_csv(out, index=False)
    with pytest.raises(ResultsMismatchError, match=r"unknown columns \['mystery'\]"):
        _run(records, out)
