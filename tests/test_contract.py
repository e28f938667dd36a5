"""The explainer API contract that the metrics, notebooks and explorer rely on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gradscorecam import (
    CAM,
    METHODS,
    ClassIndexError,
    GradCAM,
    GradPlusPlusScoreCAM,
    InputImageError,
    ScoreCAM,
    SmoothGradCAMPlusPlus,
    TargetLayerError,
    UnsupportedModelError,
)

FAST = {"SmoothGrad-CAM++": {"n_samples": 4}}


def make(name: str, model: nn.Module, layer: str = "layer", **options):
    return METHODS[name](model, layer, **{**FAST.get(name, {}), **options})


@pytest.mark.parametrize("name", list(METHODS))
def test_output_contract(gap_net, images, name):
    explainer = make(name, gap_net)
    saliency = explainer(images)
    assert saliency.shape == (3, 16, 16) and saliency.dtype == torch.float32
    assert saliency.device == images.device
    # per-image min-max: every non-empty map spans exactly [0, 1]
    assert torch.allclose(saliency.amin(dim=(1, 2)), torch.zeros(3))
    assert torch.allclose(saliency.amax(dim=(1, 2)), torch.ones(3))
    raw = explainer(images, upsample=False)
    assert raw.shape == (3, 8, 8)
    # the upsampled map is the feature-resolution map, ReLU'd, resized bilinearly and rescaled
    explanation = explainer.explain(images)
    resized = torch.nn.functional.interpolate(
        torch.relu(explanation.maps)[:, None], size=(16, 16), mode="bilinear", align_corners=False
    )[:, 0]
    lo, hi = resized.amin(dim=(1, 2), keepdim=True), resized.amax(dim=(1, 2), keepdim=True)
    assert torch.allclose(saliency, (resized - lo) / (hi - lo), atol=1e-6)


@pytest.mark.parametrize("name", list(METHODS))
def test_targets_none_explains_the_predicted_class(gap_net, images, name):
    explainer = make(name, gap_net)
    predicted = gap_net(images).argmax(1)
    explanation = explainer.explain(images)
    assert torch.equal(explanation.targets, predicted)
    assert torch.allclose(explainer(images), explainer(images, predicted.tolist()))
    single = explainer(images, targets=4)
    assert torch.allclose(single, explainer(images, [4, 4, 4]))


@pytest.mark.parametrize("name", list(METHODS))
def test_batch_equals_single_calls(gap_net, images, name):
    explainer = make(name, gap_net)
    targets = [1, 5, 8]
    batched = explainer(images, targets)
    singles = torch.cat([explainer(images[i : i + 1], targets[i]) for i in range(3)])
    assert torch.allclose(batched, singles, atol=1e-5)


@pytest.mark.parametrize("name", list(METHODS))
def test_batch_equals_single_calls_at_inner_layer(vgg_net, images, name):
    if name == "CAM":
        pytest.skip("CAM is not defined on a VGG-shaped model (tested in test_cam_refuses_models_without_gap_head)")
    explainer = make(name, vgg_net, "features.3")
    batched = explainer(images, [0, 2, 3])
    singles = torch.cat([explainer(images[i : i + 1], t) for i, t in enumerate([0, 2, 3])])
    assert torch.allclose(batched, singles, atol=1e-5)


@pytest.mark.parametrize(
    "cls, options",
    [
        (ScoreCAM, {}),
        (ScoreCAM, {"variant": "pytorch-grad-cam"}),
        (GradPlusPlusScoreCAM, {}),
        (GradPlusPlusScoreCAM, {"perturb": "feature", "max_channels": 5, "combine": "score_x_grad"}),
        (SmoothGradCAMPlusPlus, {"n_samples": 6}),
    ],
)
def test_chunk_size_does_not_change_the_result(vgg_net, images, cls, options):
    one = cls(vgg_net, "features.3", batch_size=1, **options).explain(images, [1, 2, 3])
    many = cls(vgg_net, "features.3", batch_size=64, **options).explain(images, [1, 2, 3])
    assert torch.allclose(one.weights, many.weights, rtol=1e-5, atol=1e-7)
    assert torch.allclose(one.maps, many.maps, rtol=1e-5, atol=1e-6)


def test_constant_channels_are_skipped(gap_net, images):
    with torch.no_grad():  # channel 3 of the target conv: zero weights and bias -> ReLU map constant 0
        gap_net.layer[0].weight[3] = 0
        gap_net.layer[0].bias[3] = 0
    explanation = ScoreCAM(gap_net, "layer").explain(images)
    assert not explanation.details["scored"][:, 3].any()
    assert torch.equal(explanation.weights[:, 3], torch.zeros(3))
    assert explanation.details["scored"][:, [0, 1, 2]].all()


# ------------------------------------------------------------------------------------------- model state
def _state(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()),
    )


def _assert_same_state(before, after):
    assert before[0] == after[0] and before[1] == after[1] and before[3] == after[3] == 0
    for g0, g1 in zip(before[2], after[2], strict=True):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)


def _mixed_state(model: nn.Module) -> nn.Module:
    model.train()
    model.stem.eval()  # a mix of modes must come back as it was
    model.stem[0].weight.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.5)
    return model


@pytest.mark.parametrize("name", list(METHODS))
def test_model_state_restored_after_call(gap_net, images, name):
    model = _mixed_state(gap_net)
    before = _state(model)
    make(name, model)(images)
    _assert_same_state(before, _state(model))


@pytest.mark.parametrize("name", list(METHODS))
def test_model_runs_in_eval_mode_during_call(gap_net, images, name):
    reference = make(name, gap_net)(images, [1, 2, 3])
    gap_net.train()  # BatchNorm in train mode would use batch statistics and give other maps
    assert torch.allclose(make(name, gap_net)(images, [1, 2, 3]), reference, atol=1e-6)
    assert gap_net.training


class Boom(RuntimeError):
    pass


def test_state_restored_after_exception_in_scoring_phase(gap_net, images):
    model = _mixed_state(gap_net)
    before = _state(model)

    def interrupt(done: int, total: int) -> None:
        raise Boom("stopped halfway")

    with pytest.raises(Boom):
        GradPlusPlusScoreCAM(model, "layer", batch_size=2, progress=interrupt)(images)
    _assert_same_state(before, _state(model))


@pytest.mark.parametrize("name", list(METHODS))
def test_state_restored_after_exception_in_forward(gap_net, images, name):
    model = _mixed_state(gap_net)

    def fail(*_):
        raise Boom("failure after the target layer")

    handle = model.pool.register_forward_hook(fail)
    before = _state(model)
    with pytest.raises(Boom):
        make(name, model)(images)
    handle.remove()
    before = (before[0], before[1], before[2], 0)
    _assert_same_state(before, _state(model))


def test_in_place_relu_after_target_layer_does_not_alter_activations(vgg_net, images):
    # features.3 is a conv followed by ReLU(inplace=True): the stored activations must stay pre-ReLU.
    explanation = GradCAM(vgg_net, "features.3").explain(images)
    expected = vgg_net.features[:4](images)
    assert torch.allclose(explanation.activations, expected, atol=1e-6)
    assert (explanation.activations < 0).any()


def test_context_manager(gap_net, images):
    with GradCAM(gap_net, "layer") as explainer:
        saliency = explainer(images)
    assert saliency.shape == (3, 16, 16)
    assert _state(gap_net)[3] == 0


def test_target_layer_given_as_module(gap_net, images):
    by_name = GradCAM(gap_net, "layer")(images)
    by_module = GradCAM(gap_net, gap_net.layer)(images)
    assert torch.equal(by_name, by_module)


# -------------------------------------------------------------------------------------------- errors
def test_unknown_layer_names_the_closest(gap_net):
    with pytest.raises(TargetLayerError, match=r"no layer named 'layr'.*'layer'"):
        GradCAM(gap_net, "layr")


def test_resnet_typo_suggests_layer4(torchvision_models):
    model, _ = torchvision_models["resnet18"]
    with pytest.raises(TargetLayerError, match="'layer4'"):
        GradCAM(model, "layer5")


def test_module_not_in_model(gap_net):
    with pytest.raises(TargetLayerError, match="not a submodule"):
        GradCAM(gap_net, nn.Conv2d(3, 3, 1))


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("bad", [10, -1, [0, 1, 99]])
def test_class_index_out_of_range(gap_net, images, name, bad):
    with pytest.raises(ClassIndexError, match=r"out of range: the model has 10 classes \(valid indices 0..9\)"):
        make(name, gap_net)(images, bad)


def test_wrong_number_of_targets(gap_net, images):
    with pytest.raises(ClassIndexError, match="got 2 targets for 3 images"):
        GradCAM(gap_net, "layer")(images, [1, 2])


def test_cam_refuses_models_without_gap_head(vgg_net, images, torchvision_models):
    with pytest.raises(UnsupportedModelError, match="Use GradCAM"):
        CAM(vgg_net, "features.4")(images)
    for arch in ("vgg11", "alexnet"):
        model, layer = torchvision_models[arch]
        with pytest.raises(UnsupportedModelError, match=r"takes \d+ features.*Use GradCAM"):
            CAM(model, layer)(torch.randn(1, 3, 64, 64))


def test_cam_refuses_two_layer_head_with_matching_width(images):
    # conv -> GAP -> Linear(12, 12) -> ReLU -> Linear(12, 10): the last linear layer takes 12 features, as many
    # as the target layer has channels, but the logits are not fc(GAP(A)): CAM must notice.
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 12, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 10),
    ).eval()  # fmt: skip
    with pytest.raises(UnsupportedModelError, match="not 5\\(global average pool"):
        CAM(model, "0")(images)


def test_cam_without_any_linear_layer():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(UnsupportedModelError, match="has no nn.Linear"):
        CAM(model, "0")


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.randn(3, 16, 16), r"must be 4-D .*unsqueeze\(0\)"),
        (torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8), "float tensor"),
        (np.zeros((1, 3, 16, 16), dtype=np.float32), "must be a torch.Tensor"),
        (torch.randn(1, 1, 16, 16), r"expects 3 channels, the images have 1.*grayscale.*convert\('RGB'\)"),
        (torch.randn(1, 3, 1100, 1100), "max_input_pixels"),
    ],
    ids=["3-D", "uint8", "numpy", "grayscale", "huge"],
)
@pytest.mark.parametrize("name", list(METHODS))
def test_bad_images(gap_net, name, bad, message):
    with pytest.raises(InputImageError, match=message):
        make(name, gap_net)(bad)


def test_huge_image_allowed_when_asked(gap_net):
    out = GradCAM(gap_net, "layer", max_input_pixels=None)(torch.randn(1, 3, 1100, 1100))
    assert out.shape == (1, 1100, 1100)


@pytest.mark.parametrize("name", list(METHODS))
def test_target_layer_output_not_4d(gap_net, images, name):
    with pytest.raises(TargetLayerError, match=r"'flatten' outputs \(3, 12\), not a 4-D"):
        make(name, gap_net, "flatten")(images)


def test_model_not_returning_logits(images):
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(InputImageError, match=r"returned \(3, 4, 14, 14\).*\(B, num_classes\) logits"):
        GradCAM(model, "0")(images)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mask_source": "grad"}, "mask_source='grad' is not one of 'gradient', 'activation'"),
        ({"perturb": "pixels"}, "perturb='pixels'"),
        ({"baseline": "blur"}, "baseline='blur'"),
        ({"combine": "product"}, "combine='product'"),
        ({"max_channels": 0}, 'max_channels must be a positive int, "all"'),
        ({"max_channels": "every"}, 'max_channels must be a positive int, "all"'),
        ({"max_channels": True}, 'max_channels must be a positive int, "all"'),
    ],
)
def test_gradpp_scorecam_rejects_unknown_options(gap_net, options, message):
    with pytest.raises(ValueError, match=message):
        GradPlusPlusScoreCAM(gap_net, "layer", **options)


def test_make_explainer_passes_only_the_options_that_apply(gap_net):
    from gradscorecam import make_explainer

    score = make_explainer("Score-CAM", gap_net, "layer", batch_size=5, max_channels=3, smooth_samples=7)
    assert (score.batch_size, score.max_channels) == (5, 3)
    smooth = make_explainer("SmoothGrad-CAM++", gap_net, "layer", smooth_samples=7, seed=11, max_channels=3)
    assert (smooth.n_samples, smooth.seed) == (7, 11)
    reading = make_explainer(
        "Grad++ScoreCAM", gap_net, "layer", max_channels=4, overrides={"Grad++ScoreCAM": {"baseline": None}}
    )
    assert {k: reading.options()[k] for k in ("mask_source", "perturb", "baseline", "combine", "max_channels")} == {
        "mask_source": "activation", "perturb": "input", "baseline": None, "combine": "score", "max_channels": 4}  # fmt: skip
    assert type(make_explainer("CAM", gap_net, "layer", max_channels=4)).__name__ == "CAM"
    with pytest.raises(ValueError, match="unknown method 'GradCAM'; choose from 'CAM', 'Grad-CAM'"):
        make_explainer("GradCAM", gap_net, "layer")
    assert make_explainer("Score-CAM", gap_net, "layer").batch_size == 32  # None keeps the class default


def test_method_options_per_method():
    from gradscorecam.explainers import method_options

    options = method_options(["CAM", "Score-CAM", "SmoothGrad-CAM++"], max_channels=16, smooth_samples=4, seed=1)
    assert options == {"Score-CAM": {"max_channels": 16}, "SmoothGrad-CAM++": {"n_samples": 4, "seed": 1}}
