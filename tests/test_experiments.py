"""The functions behind the figure and table notebooks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import dataclasses
import math

import pandas as pd
import pytest
import torch
from conftest import random_image_records, tiny_spec
from matplotlib import pyplot as plt
from PIL import Image
from torchvision import transforms

from gradscorecam import GradCAM, experiments
from gradscorecam.datasets import ImageRecord
from gradscorecam.errors import GradScoreCAMError


def test_figures_2_to_4_use_the_same_images():
    first = experiments.figure_images("builtin", 4, seed=0)
    assert [r.image_id for r in first] == [r.image_id for r in experiments.figure_images("builtin", 4, seed=1)]
    assert len(first) == 4 and all(len(r.boxes) <= 1 for r in first)


def test_multi_object_images_builtin_is_the_composite_with_two_boxes():
    (record,) = experiments.multi_object_images("builtin", 3)
    assert record.image_id == "two_cats" and len(record.boxes) == 2


def test_multi_object_images_picks_only_images_with_two_boxes(tmp_path):
    rows = ["file,class_index,x0,y0,x1,y1"]
    for i, boxes in enumerate([1, 2, 3, 1]):
        Image.new("RGB", (40, 40)).save(tmp_path / f"im{i}.png")
        rows += [f"im{i}.png,5,{j},{j},{j + 10},{j + 10}" for j in range(boxes)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    chosen = experiments.multi_object_images(str(tmp_path / "labels.csv"), 5, seed=0)
    assert sorted(r.image_id for r in chosen) == ["im1.png", "im2.png"]  # labels CSV ids are the file names
    single = tmp_path / "single.csv"
    single.write_text("file,class_index\nim0.png,5\n")
    with pytest.warns(UserWarning, match="no image in .*single.csv has 2 or more boxes"):
        (fallback,) = experiments.multi_object_images(str(single), 5)
    assert fallback.image_id == "two_cats"


def test_method_figure_maps_and_table(gap_net, tmp_path):
    records = random_image_records(tmp_path, 2, size=20, class_index=3, prefix="img")  # 20 px: the spec resizes
    spec = tiny_spec(gap_net, "layer")
    spec = dataclasses.replace(spec, transform=transforms.Compose([transforms.Resize((16, 16)), spec.transform]))
    result = experiments.method_figure(spec, records, ["CAM", "Grad-CAM"], title="test")
    images = torch.stack([spec.transform(Image.open(r.path).convert("RGB")) for r in records])
    assert torch.allclose(result.comparison.maps["Grad-CAM"], GradCAM(gap_net, "layer")(images))
    assert list(result.table["image"]) == ["img0", "img1"]
    assert list(result.table["label"]) == ["class 3", "class 3"]
    assert result.table.attrs["provenance"].startswith("RANDOM WEIGHTS (pipeline check only): model tiny (test)")
    assert result.figure.get_label() == "grid 2x3: test"
    plt.close(result.figure)


def test_object_localization_refuses_a_transform_whose_boxes_cannot_be_mapped(gap_net, tmp_path):
    # a plain function has no known geometry: map_boxes gives None, which len() used to meet as a TypeError
    (record,) = random_image_records(tmp_path, 1, size=16, class_index=3)
    record = dataclasses.replace(record, boxes=((0, 0, 5, 5), (8, 8, 15, 15)))
    spec = dataclasses.replace(
        tiny_spec(gap_net, "layer"), transform=lambda image: transforms.functional.to_tensor(image)
    )
    with pytest.raises(GradScoreCAMError, match=r"im0: its 2 boxes cannot be placed on the model's input.*Resize"):
        experiments.object_localization(spec, [record], ["Grad-CAM"], progress=False)
    # the same image through a resize + centre crop is scored: 2 objects, one row each
    spec = dataclasses.replace(spec, transform=transforms.Compose([transforms.CenterCrop(16), transforms.ToTensor()]))
    table = experiments.object_localization(spec, [record], ["Grad-CAM"], progress=False)
    assert list(table["object"]) == [0, 1] and list(table["objects"]) == [2, 2]


def _summary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "average_drop": [10.0, math.nan], "average_drop_low": [8.0, math.nan], "average_drop_high": [12.5, math.nan],
            "average_drop_n": [30, 0], "average_increase": [40.0, math.nan], "average_increase_low": [30.0, math.nan],
            "average_increase_high": [50.0, math.nan], "average_increase_n": [30, 0],
            "seconds_per_image": [1.234, math.nan], "notes": [0, 30],
        },
        index=pd.Index(["Grad-CAM", "CAM"], name="method"),
    )  # fmt: skip


def test_faithfulness_table_next_to_the_paper(tmp_path):
    paper = experiments.load_paper_table("data/paper_table1.csv")
    table = experiments.faithfulness_table(_summary(), paper)
    assert table.loc["Grad-CAM", "Average Drop %"] == 10.0
    assert table.loc["Grad-CAM", "Average Drop % 95% CI"] == "[8.0, 12.5]"
    assert table.loc["Grad-CAM", "Average Drop % (paper, VGG16)"] == 47.8  # the paper's numbers are VGG16's
    assert table.loc["Grad-CAM", "Average Increase % (paper, VGG16)"] == 19.6
    assert table.loc["CAM", "note"].startswith("not defined for this model")
    assert table.loc["Grad-CAM", "s/image"] == 1.23
    paths = experiments.export_table(table, tmp_path / "table1_test", caption="Table 1 (test)")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    assert pd.read_csv(paths[0], index_col=0).loc["Grad-CAM", "Average Drop % (paper, VGG16)"] == 47.8
    assert "| Grad-CAM " in paths[1].read_text() and paths[1].read_text().startswith("Table 1 (test)")
    assert "\\caption{Table 1 (test)}" in paths[2].read_text()
    assert "Pointing game" not in table  # no boxes, no pointing columns
    boxed = _summary().assign(pointing_game=[0.875, math.nan], pointing_game_n=[8, 0],
                              energy_pointing=[0.61234, math.nan], energy_pointing_n=[8, 0])  # fmt: skip
    with_boxes = experiments.faithfulness_table(boxed, paper)
    assert with_boxes.loc["Grad-CAM", ["Pointing game", "Energy pointing", "N boxes", "N"]].tolist() == [
        0.875,
        0.612,
        8,
        30,
    ]
    chart = experiments.faithfulness_chart(_summary(), paper, title="t", random_weights=True)
    assert len(chart.axes) == 2
    plt.close(chart)


def test_recorded_budgets_read_each_methods_own_rows(tmp_path):
    """From real runner rows (each row records its own explainer's options): what ran, also for a default."""
    import torch
    from torch import nn

    from gradscorecam import evaluate
    from gradscorecam.explainers import describe_channel_budgets

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10)
    )
    spec = tiny_spec(net, "1")
    records = random_image_records(tmp_path, 1)
    options = {"Score-CAM": {"max_channels": 3}}  # Grad++ScoreCAM left at its default
    results = evaluate(spec, records, ["Score-CAM", "Grad++ScoreCAM", "Grad-CAM"], tmp_path / "r.csv",
                       deletion_steps=0, explainer_options=options, progress=False)  # fmt: skip
    budgets = experiments.recorded_budgets(results)
    assert budgets == {"Score-CAM": 3, "Grad++ScoreCAM": 64}
    assert describe_channel_budgets(budgets).startswith("Score-CAM: at most 3 channels per image")
    caption = experiments.table1_caption(spec, _summary(), "builtin", records, seed=0, score="logit",
                                         masking="normalized", budgets=budgets)  # fmt: skip
    assert "Score-CAM: at most 3 channels" in caption and "Grad++ScoreCAM: at most 64 channels" in caption
    # a file written before effective options were recorded cannot say what ran: refuse rather than guess
    old = results.assign(explainer_options="{}")
    with pytest.raises(ValueError, match="do not record one channel budget for Score-CAM"):
        experiments.recorded_budgets(old)


def test_table1_caption_says_what_ran(vgg_net):
    records = [ImageRecord(f"im{i}.png", None, 0) for i in range(3)]  # type: ignore[arg-type]
    spec = tiny_spec(vgg_net, "features.4", "resnet20_cifar10")
    caption = experiments.table1_caption(spec, _summary(), "../shared/data/cifar10_samples/labels.csv", records, seed=0,
                                         score="logit", masking="normalized",
                                         budgets={"Score-CAM": "all", "Grad++ScoreCAM": 64})  # fmt: skip
    assert "ImageNet" not in caption
    assert "3 image(s) from ../shared/data/cifar10_samples/labels.csv, N = 30 with values" in caption
    assert (
        "Average Drop/Increase on logits" in caption
        and "Deletion/Insertion AUC always on softmax probabilities" in caption
    )
    assert "channels scored: Score-CAM: every non-constant channel; Grad++ScoreCAM: at most 64 channels" in caption
    assert "(paper, VGG16): the paper's Table 1, measured on VGG16, another network than resnet20_cifar10" in caption
    assert caption.startswith("RANDOM WEIGHTS")  # tiny_spec's weights are random
    probability = experiments.table1_caption(dataclasses.replace(spec, name="vgg16"), _summary(), "builtin", records,
                                             seed=0, score="probability", masking="pixel", paper=False)  # fmt: skip
    assert "softmax probabilities of the explained class" in probability and "Deletion" not in probability
    assert "(paper" not in probability and "3 built-in image(s)" in probability


def test_rows_for_keeps_only_the_current_images():
    results = pd.DataFrame({"image_id": ["a", "b", "c"], "method": ["Grad-CAM"] * 3})
    records = [ImageRecord("a", None, 0), ImageRecord("c", None, 0)]  # type: ignore[arg-type]
    from gradscorecam.results import rows_for

    assert list(rows_for(results, records)["image_id"]) == ["a", "c"]
