"""What ran: every explainer's effective options, and the channel budget's three values (int, "all", None)."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

from gradscorecam.explainers import METHODS, GradPlusPlusScoreCAM, ScoreCAM, make_explainer, method_options


def wide_gap_net(channels: int = 80, num_classes: int = 5) -> nn.Module:
    """A GAP + linear toy with more channels at ``layer`` than Grad++ScoreCAM's default budget of 64."""
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            layer=nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU()),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(channels, num_classes),
        )
    )
    with torch.no_grad():
        model.fc.weight.abs_()  # every Grad-CAM++ weight w_k > 0, so a budget is the only thing that limits
    return model.eval()


@pytest.fixture
def wide():
    return wide_gap_net(), torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_all_scores_every_channel_and_none_keeps_the_default_64(wide, one_thread):
    model, image = wide
    every = make_explainer("Grad++ScoreCAM", model, "layer", max_channels="all")
    assert every.options()["max_channels"] == "all"
    explanation = every.explain(image, 2)
    masks = explanation.details["masks"].flatten(-2)
    non_constant = masks.amax(-1) > masks.amin(-1)
    assert torch.equal(explanation.details["scored"], non_constant)
    assert int(explanation.details["scored"].sum()) > 70  # more than the default budget: nothing capped it

    default = make_explainer("Grad++ScoreCAM", model, "layer", max_channels=None)
    assert default.options()["max_channels"] == 64 == GradPlusPlusScoreCAM(model, "layer").max_channels
    assert GradPlusPlusScoreCAM(model, "layer", max_channels=None).max_channels == 64
    assert int(default.explain(image, 2).details["scored"].sum()) == 64


def test_scorecam_default_is_all_and_an_int_caps_it(wide, one_thread):
    model, image = wide
    assert ScoreCAM(model, "layer").options()["max_channels"] == "all"
    assert ScoreCAM(model, "layer", max_channels=None).options()["max_channels"] == "all"
    assert make_explainer("Score-CAM", model, "layer", max_channels=None).options()["max_channels"] == "all"
    assert (
        int(make_explainer("Score-CAM", model, "layer", max_channels=7).explain(image, 0).details["scored"].sum()) == 7
    )


def test_the_factory_passes_all_through_and_drops_none():
    options = method_options(["CAM", "Score-CAM", "Grad++ScoreCAM"], max_channels="all")
    assert options == {"Score-CAM": {"max_channels": "all"}, "Grad++ScoreCAM": {"max_channels": "all"}}
    assert method_options(["Score-CAM", "Grad++ScoreCAM"], max_channels=None) == {}
    with pytest.raises(ValueError, match='max_channels must be a positive int, "all"'):
        method_options(["Score-CAM"], max_channels="everything")


@pytest.mark.parametrize("method", list(METHODS))
def test_options_are_json_and_rebuild_the_same_explainer(method, gap_net, images, one_thread):
    explainer = make_explainer(method, gap_net, gap_net.layer, batch_size=5)  # the layer as a module
    options = explainer.options()
    assert json.loads(json.dumps(options)) == options
    assert options["target_layer"] == "layer" and options["max_input_pixels"] == 1024 * 1024
    rebuilt = type(explainer)(gap_net, **options)
    assert rebuilt.options() == options
    torch.testing.assert_close(rebuilt(images, [1, 2, 3]), explainer(images, [1, 2, 3]), atol=0, rtol=0)


def test_options_hold_every_default(gap_net):
    speed = {"channels_last": True, "fuse_batchnorm": True, "autocast": None, "cudnn_benchmark": True}
    base = {"target_layer": "layer", "max_input_pixels": 1024 * 1024}
    assert make_explainer("CAM", gap_net, "layer").options() == {**base, "fc_layer": "fc"}
    assert make_explainer("Grad-CAM", gap_net, "layer").options() == base
    assert make_explainer("Grad-CAM++", gap_net, "layer").options() == {**base, "eps": 0.0}
    assert make_explainer("Score-CAM", gap_net, "layer").options() == {
        **base, "batch_size": 32, **speed, "variant": "authors", "max_channels": "all"}  # fmt: skip
    assert make_explainer("SmoothGrad-CAM++", gap_net, "layer").options() == {
        **base, "n_samples": 25, "noise_level": 0.15, "seed": 0, "batch_size": 16, "eps": 0.0}  # fmt: skip
    assert make_explainer("Grad++ScoreCAM", gap_net, "layer").options() == {
        **base, "batch_size": 32, **speed, "mask_source": "activation", "perturb": "input", "baseline": "zeros",
        "combine": "score", "max_channels": 64, "eps": 0.0}  # fmt: skip
    assert GradPlusPlusScoreCAM(gap_net, "layer", autocast=torch.bfloat16).options()["autocast"] == "bfloat16"
    assert ScoreCAM(gap_net, "layer", autocast="fp16").options()["autocast"] == "float16"


def test_budget_spellings(gap_net):
    import numpy as np

    budget = GradPlusPlusScoreCAM(gap_net, "layer", max_channels=np.int64(5)).options()["max_channels"]
    assert budget == 5 and type(budget) is int  # a NumPy integer (e.g. read from a table) is recorded as an int
    for bad in (0, -3, True, 2.5, "All", "none"):
        with pytest.raises(ValueError, match=r'max_channels must be a positive int, "all" \(every channel\) or None'):
            ScoreCAM(gap_net, "layer", max_channels=bad)
