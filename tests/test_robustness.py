"""Inputs the happy path does not try: half-precision models, and every spelling of a class index."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import small_gap_net
from torch import nn

from gradscorecam import ClassIndexError, UnsupportedModelError
from gradscorecam.explainers import CAM, METHODS, SmoothGradCAMPlusPlus
from gradscorecam.explainers.targets import resolve_targets
from gradscorecam.metrics import deletion_auc, explanation_scores

LOGITS = torch.zeros(3, 10)


# ------------------------------------------------------------------------------------------- targets
@pytest.mark.parametrize(
    "targets, expected",
    [
        (4, [4, 4, 4]),
        (np.int64(4), [4, 4, 4]),
        (np.int32(4), [4, 4, 4]),
        (torch.tensor(4), [4, 4, 4]),
        ([1, 2, 3], [1, 2, 3]),
        ([np.int64(1), np.uint8(2), torch.tensor(3)], [1, 2, 3]),
        (np.array([1, 2, 3]), [1, 2, 3]),
        (np.array([[1], [2], [3]], dtype=np.int16), [1, 2, 3]),
        (torch.tensor([1, 2, 3], dtype=torch.int32), [1, 2, 3]),
        ((9,), [9, 9, 9]),
    ],
)
def test_integer_targets_in_every_form(targets, expected):
    assert resolve_targets(targets, LOGITS, 3, 10).tolist() == expected


@pytest.mark.parametrize(
    "targets, message",
    [
        (2.0, r"got 2.0 \(float\)"),
        ([1, 2.7, 3], r"got 2.7 \(float\)"),
        (np.array([1.0, 2.0, 3.0]), "dtype float64"),
        (torch.tensor([1.0, 2.0, 3.0]), "dtype torch.float32"),
        (True, r"got True \(bool\)"),
        ([True, False, True], r"got True \(bool\)"),
        (np.array([True, False, True]), "dtype bool"),
        (torch.tensor([True, False, True]), "dtype torch.bool"),
        ("3", "got '3'"),
        ([1, 2], "got 2 targets for 3 images"),
        (10, r"class index 10 is out of range: the model has 10 classes \(valid indices 0..9\)"),
        ([0, -1, 2], "class index -1 is out of range"),
        (np.int64(12), "class index 12 is out of range"),
    ],
)
def test_bad_targets_raise_class_index_error(targets, message):
    with pytest.raises(ClassIndexError, match=message):
        resolve_targets(targets, LOGITS, 3, 10)


@pytest.mark.parametrize("targets", [np.int64(3), np.array([3, 3, 3]), [3.0, 3.0, 3.0], 12])
def test_metrics_resolve_targets_like_the_explainers(gap_net, images, targets):
    saliency = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    explainer = METHODS["Grad-CAM"](gap_net, "layer")
    try:
        expected = explainer.explain(images, targets).targets
    except ClassIndexError as error:  # the metrics refuse exactly what the explainers refuse, with the same words
        with pytest.raises(ClassIndexError, match=str(error).split(";")[0][:40]):
            explanation_scores(gap_net, images, saliency, targets)
        with pytest.raises(ClassIndexError):
            deletion_auc(gap_net, images, saliency, targets, steps=2)
        return
    Y, _ = explanation_scores(gap_net, images, saliency, targets)
    probabilities = torch.softmax(gap_net(images), dim=1).detach().double()
    torch.testing.assert_close(Y, probabilities[torch.arange(3), expected])


# ------------------------------------------------------------------------------------ half precision
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_explains_a_bfloat16_model(method, gap_net, images, one_thread):
    # Before: SmoothGrad-CAM++ added float32 noise to bf16 images (a dtype error in the first convolution),
    # CAM checked its GAP identity in bf16 with a float32 tolerance and refused a true GAP model.
    half = copy.deepcopy(gap_net).to(torch.bfloat16)
    reference = METHODS[method](gap_net, "layer")(images, [1, 2, 3])
    maps = METHODS[method](half, "layer")(images.to(torch.bfloat16), [1, 2, 3])
    assert maps.dtype == torch.float32 and maps.shape == reference.shape
    # bf16 keeps 8 bits of mantissa: the [0, 1] maps move by a few hundredths, Grad++ScoreCAM's score
    # differences alpha_k = p(X * H^k) - p(0) by more (measured: up to 0.15 on this model).
    tolerance = 0.25 if method == "Grad++ScoreCAM" else 0.05
    assert (maps - reference).abs().max() < tolerance


def test_smoothgrad_noise_is_the_same_in_bfloat16(gap_net, images, one_thread):
    # The seeded noise is drawn in float32 and added in the model's dtype: the noisy copies of a bf16 run are
    # the float32 run's copies rounded to bf16, so the two maps agree to bf16 precision at an inner layer.
    half = copy.deepcopy(gap_net).to(torch.bfloat16)
    full = SmoothGradCAMPlusPlus(gap_net, "block", n_samples=3, seed=5)(images, [1, 2, 3])
    low = SmoothGradCAMPlusPlus(half, "block", n_samples=3, seed=5)(images.to(torch.bfloat16), [1, 2, 3])
    assert (low - full).abs().max() < 0.05


def test_cam_still_refuses_a_bfloat16_model_without_a_gap_head(images):
    # The same channel count at the layer and the linear layer, but a convolution in between: not CAM's case.
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            layer=nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()),
            mix=nn.Conv2d(6, 6, 3, padding=1),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(6, 4),
        )
    ).eval()
    with pytest.raises(UnsupportedModelError, match="the logits are not fc"):
        CAM(model.to(torch.bfloat16), "layer")(images.to(torch.bfloat16))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cam_accepts_a_half_precision_gap_model_and_returns_its_weights(images, dtype):
    model = small_gap_net()
    explanation = CAM(copy.deepcopy(model).to(dtype), "layer").explain(images.to(dtype), [1, 2, 3])
    expected = model.fc.weight.detach().to(dtype).float()[[1, 2, 3]]
    torch.testing.assert_close(explanation.weights, expected, atol=0, rtol=0)
