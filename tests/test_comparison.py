"""compare_methods: the computation behind the figure grids."""

from __future__ import annotations

import pytest
import torch

from gradscorecam import GradCAM, ScoreCAM
from gradscorecam.comparison import compare_methods, row_titles
from gradscorecam.torchutils import resolve_device


def test_maps_are_each_methods_own_output(gap_net, images):
    comparison = compare_methods(gap_net, "layer", images, methods=["Grad-CAM", "Score-CAM"], batch_size=4)
    predicted = gap_net(images).argmax(1)
    assert torch.equal(comparison.targets, predicted)
    assert torch.allclose(comparison.maps["Grad-CAM"], GradCAM(gap_net, "layer")(images))
    assert torch.allclose(comparison.maps["Score-CAM"], ScoreCAM(gap_net, "layer")(images))
    probabilities = torch.softmax(gap_net(images), 1)[torch.arange(3), predicted]
    assert torch.allclose(comparison.probabilities, probabilities.detach())
    assert set(comparison.seconds) == {"Grad-CAM", "Score-CAM"} and all(s > 0 for s in comparison.seconds.values())


def test_cam_on_vgg_gets_a_reason_not_a_map(vgg_net, images):
    comparison = compare_methods(vgg_net, "features.3", images, targets=[1, 2, 3], methods=["CAM", "Grad-CAM"])
    assert isinstance(comparison.maps["CAM"], str) and "not defined" in comparison.maps["CAM"]
    assert "CAM" not in comparison.seconds
    assert comparison.targets.tolist() == [1, 2, 3]


def test_row_titles_show_class_and_probability(gap_net, images):
    comparison = compare_methods(gap_net, "layer", images, targets=[0, 1, 2], methods=[])
    categories = [f"class {i}" for i in range(10)]
    p = torch.softmax(gap_net(images), 1)[0, 0].item()
    assert row_titles(comparison, categories)[0] == f"class 0\n(p = {p:.2f})"


def test_model_mode_is_restored(gap_net, images):
    gap_net.train()
    compare_methods(gap_net, "layer", images, methods=["Grad-CAM"])
    assert gap_net.training


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="sees no CUDA GPU"):
            resolve_device("cuda")
