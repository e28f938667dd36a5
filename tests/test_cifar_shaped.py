"""A second network family: nothing may assume 224 x 224 inputs or ImageNet's 1000 classes.

A CIFAR-shaped ResNet built here (32 x 32 inputs, 10 classes, ``layer3`` 8 x 8, ``layer2`` 16 x 16, as the
CIFAR-10 ResNet-20 of ``../shared`` but with few channels) runs through every method, the runner, the
Figure 5 scores and the ablation; labels of another data set and non-finite inputs fail with clear errors.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms

from gradscorecam import METHODS, ablation, evaluate, experiments, metrics
from gradscorecam.datasets import ImageRecord, check_class_indices, labels_csv, load_batch
from gradscorecam.errors import ClassIndexError, InputImageError, UnsupportedModelError
from gradscorecam.explainers import make_explainer
from gradscorecam.models import ModelSpec

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)) + self.shortcut(x))


class TinyCifarResNet(nn.Module):
    """Stem, three stages (8, 16, 32 channels at 32, 16, 8 pixels), global average pooling, 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.layer1, self.layer2, self.layer3 = Block(8, 8, 1), Block(8, 16, 2), Block(16, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(32, 10)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(F.relu(self.conv1(x)))))
        return self.linear(torch.flatten(self.pool(x), 1))


MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    return ModelSpec(
        TinyCifarResNet(), transform, "layer3", CLASSES, MEAN, STD, "resnet20_cifar10 (test)", "random (test)"
    )


@pytest.fixture
def cifar_folder(tmp_path: Path) -> Path:
    """Four 32 x 32 images with a labels CSV in the CIFAR layout; two of them with two boxes each."""
    rng = np.random.default_rng(0)
    rows = ["file,class_index,class_name,x0,y0,x1,y1"]
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"c{i}.png")
        if i < 2:
            rows += [f"c{i}.png,{i},{CLASSES[i]},2,4,12,20", f"c{i}.png,{i},{CLASSES[i]},18,6,29,25"]
        else:
            rows.append(f"c{i}.png,{i},{CLASSES[i]},,,,")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("layer", ["layer3", "layer2"])
def test_every_method_explains_32x32_images(spec, method, layer):
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    explainer = make_explainer(method, spec.model, layer, max_channels=8, smooth_samples=2, seed=0)
    if method == "CAM" and layer == "layer2":  # CAM needs GAP + linear right after the layer
        with pytest.raises(UnsupportedModelError, match="16 channels but the final linear layer"):
            explainer(images)
        return
    saliency = explainer(images, targets=[3, 7])
    assert saliency.shape == (2, 32, 32) and torch.isfinite(saliency).all()
    assert saliency.amax(dim=(1, 2)).tolist() == pytest.approx([1.0, 1.0])  # min-max normalised, not all zero
    raw = explainer(images, targets=[3, 7], upsample=False)
    assert raw.shape[-2:] == ((8, 8) if layer == "layer3" else (16, 16))


def test_runner_table1_and_pointing_games_on_cifar_shaped_images(spec, cifar_folder, tmp_path):
    records = labels_csv(cifar_folder)
    df = evaluate(spec, records, "all", tmp_path / "t1.csv", deletion_steps=4, batch_size=16, progress=False,
                  explainer_options={"Score-CAM": {"max_channels": 8}, "Grad++ScoreCAM": {"max_channels": 8},
                                     "SmoothGrad-CAM++": {"n_samples": 2}})  # fmt: skip
    assert len(df) == 4 * len(METHODS) and df["drop"].between(0, 100).all()
    assert df["insertion_auc"].between(0, 1).all()
    boxed = df[df["image_id"].isin(["c0.png", "c1.png"])]
    assert boxed["pointing_hit"].isin([0.0, 1.0]).all() and boxed["energy_pointing"].between(0, 1).all()
    assert df[df["image_id"] == "c2.png"]["pointing_hit"].isna().all()
    # the pointing game ran with the tolerance scaled to 32 px (2.14 px), recomputed here by hand
    row = boxed.iloc[0]
    images, boxes = load_batch([records[0]], spec.transform)
    saliency = make_explainer(row["method"], spec.model, "layer3", max_channels=8, smooth_samples=2)(
        images, [int(row["class_index"])]
    )
    y, x = divmod(int(saliency[0].argmax()), 32)
    distance = min(math.hypot(max(x0 - x, 0, x - x1), max(y0 - y, 0, y - y1)) for x0, y0, x1, y1 in boxes[0])
    assert row["pointing_hit"] == float(distance <= 15 * 32 / 224)


def test_figure5_scores_on_cifar_shaped_images(spec, cifar_folder):
    records = experiments.multi_object_images(str(cifar_folder), None, num_classes=len(CLASSES))
    assert [r.image_id for r in records] == ["c0.png", "c1.png"]
    objects = experiments.object_localization(spec, records, ["Grad-CAM", "Score-CAM"], progress=False, max_channels=8)
    assert len(objects) == 2 * 2 * 2 and set(objects["object"]) == {0, 1}
    per_image = experiments.object_scores_per_image(objects)
    assert len(per_image) == 4 and per_image["objects_found"].isin([0.0, 0.5, 1.0]).all()
    # each per-image value is what metrics.object_scores gives for that map
    images, boxes = load_batch(records[:1], spec.transform)
    saliency = make_explainer("Grad-CAM", spec.model, "layer3")(images, [0])
    expected = metrics.object_scores(saliency[0], boxes[0])
    got = per_image[(per_image["image_id"] == "c0.png") & (per_image["method"] == "Grad-CAM")].iloc[0]
    assert got["objects_found"] == expected.objects_found
    assert got["min_object_energy"] == pytest.approx(expected.min_object_energy)


def test_no_composite_for_a_model_without_imagenet_classes():
    with pytest.warns(UserWarning, match="class 281 .* 10 classes"):
        assert experiments.multi_object_images("builtin", 3, num_classes=10) == []
    assert [r.image_id for r in experiments.multi_object_images("builtin", 3, num_classes=1000)] == ["two_cats"]


def test_ablation_on_a_cifar_resnet(spec, cifar_folder, tmp_path):
    assert ablation.default_layers(spec) == ["layer3", "layer2"]  # the stage before the usual one
    records = labels_csv(cifar_folder)[:2]
    assert ablation.input_size(spec, records) == (32, 32)
    assert ablation.followed_by_gap_linear(spec, "layer3", (32, 32))
    assert not ablation.followed_by_gap_linear(spec, "layer2", 32)
    configs = [
        ablation.Config(ablation.readings()[0], 8),
        ablation.Config({**ablation.readings()[0], "mask_source": "gradient"}, 8),
    ]
    table = ablation.run_ablation(spec, records, configs, tmp_path / "abl", layer="layer3", deletion_steps=4,
                                  baselines=("Grad-CAM++",), progress=False)  # fmt: skip
    assert table.loc[1, "note"].startswith("identical by construction")  # layer3 is followed by GAP + linear
    assert (table["n_images"] == 2).all()


# ------------------------------------------------------------------------ labels of another data set
def test_a_class_index_outside_the_model_names_file_line_and_classes(spec, cifar_folder, tmp_path):
    text = cifar_folder.read_text().replace("c3.png,3,cat,,,,", "c3.png,12,cat,,,,")
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    records = labels_csv(bad)  # a labels CSV alone cannot know the model's classes
    message = rf"{bad}, line 7: class index 12 is outside the model's 10 classes \(valid indices 0..9\)"
    with pytest.raises(ClassIndexError, match=message):
        check_class_indices(records, 10)
    with pytest.raises(ClassIndexError, match=message):
        evaluate(spec, records, ["Grad-CAM"], tmp_path / "r.csv", deletion_steps=0, progress=False)
    assert not (tmp_path / "r.csv").exists()  # refused before anything was written
    with pytest.raises(ClassIndexError, match=message):
        experiments.method_figure(spec, records, ["Grad-CAM"])
    with pytest.raises(ClassIndexError, match="outside the model's 10 classes"):
        experiments.object_localization(spec, [experiments.two_cats_composite()], ["Grad-CAM"], progress=False)
    # a record built in code names its file and id
    with pytest.raises(ClassIndexError, match=r"x\.png \(x\): class index -1"):
        check_class_indices([ImageRecord("x", Path("x.png"), -1)], 10)


# ------------------------------------------------------------------------------------ NaN and inf
@pytest.mark.parametrize("method", list(METHODS))
def test_explainers_refuse_non_finite_images(spec, method):
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    images[1, 0, 5, 5] = float("nan")
    explainer = make_explainer(method, spec.model, "layer3", max_channels=4, smooth_samples=2)
    with pytest.raises(InputImageError, match="images passed to the explainer hold NaN: 1 value.*item 1"):
        explainer(images)
    images[1, 0, 5, 5] = float("inf")
    with pytest.raises(InputImageError, match="infinite values"):
        explainer(images)


def test_metrics_refuse_non_finite_images_and_maps(spec):
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    saliency = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(1))
    bad_images = images.clone()
    bad_images[0, 2, 0, 0] = float("nan")
    with pytest.raises(InputImageError, match="images passed to the metric hold NaN.*item 0"):
        metrics.explanation_scores(spec.model, bad_images, saliency, [1, 2])
    with pytest.raises(InputImageError, match="images passed to the metric hold NaN"):
        metrics.deletion_auc(spec.model, bad_images, saliency, [1, 2], steps=2)
    bad_maps = saliency.clone()
    bad_maps[1, 3, 3] = float("-inf")
    with pytest.raises(InputImageError, match="saliency maps passed to the metric hold infinite values.*item 1"):
        metrics.insertion_auc(spec.model, images, bad_maps, [1, 2], steps=2)
    with pytest.raises(InputImageError, match="saliency maps hold infinite values"):
        metrics.pointing_game(bad_maps, [[(0, 0, 3, 3)], [(0, 0, 3, 3)]])


def test_object_summary_and_paired_verdicts_by_hand():
    from gradscorecam import compare

    # 4 images with 2 objects: Grad++ScoreCAM finds 2, 2, 2, 1 of them, Grad-CAM 1, 1, 1, 1
    rows = []
    for i, (ours, theirs) in enumerate(zip([1.0, 1.0, 1.0, 0.5], [0.5, 0.5, 0.5, 0.5], strict=True)):
        rows.append({"image_id": f"im{i}", "method": "Grad++ScoreCAM", "objects": 2, "objects_found": ours,
                     "min_object_energy": 1.0 + i, "seconds": 0.1, "model": "toy"})  # fmt: skip
        rows.append({"image_id": f"im{i}", "method": "Grad-CAM", "objects": 2, "objects_found": theirs,
                     "min_object_energy": 0.5 + i, "seconds": 0.01, "model": "toy"})  # fmt: skip
    per_image = pd.DataFrame(rows)
    table = experiments.object_summary(per_image)
    assert table.loc["Grad++ScoreCAM", "objects found %"] == 87.5 and table.loc["Grad-CAM", "objects found %"] == 50.0
    assert table.loc["Grad-CAM", "objects found % 95% CI"] == "[50.0, 50.0]"  # every image the same
    assert table.loc["Grad++ScoreCAM", "min object energy"] == 2.5 and table.loc["Grad++ScoreCAM", "objects"] == 8
    verdicts = compare(per_image.drop(columns="seconds"), metrics=experiments.OBJECT_METRICS).set_index("metric")
    assert verdicts.loc["objects_found", "mean_difference"] == pytest.approx(0.375)
    assert verdicts.loc["min_object_energy", "mean_difference"] == pytest.approx(0.5)
    # every difference is +0.5, so the bootstrap interval is [0.5, 0.5]; but the signed-rank test of 4 equal-sign
    # differences gives p = 2 / 2**4 = 0.125, so the verdict waits for more images (gradscorecam.verdict.decide)
    energy = verdicts.loc["min_object_energy"]
    assert (energy["low"], energy["high"]) == (0.5, 0.5) and energy["p_value"] == pytest.approx(0.125)
    assert energy["better"] is None
