"""The model-parameter randomisation test (gradscorecam.sanity) on small CNNs built here, nothing downloaded."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradscorecam.sanity import (
    Step,
    coarse_steps,
    hog_pearson,
    parameter_randomization,
    pass_table,
    randomization_steps,
    randomize_,
    run_randomization,
    short_step_label,
    spearman,
    ssim,
)


def tiny_net(seed: int = 0) -> nn.Module:
    """conv(+BN) -> conv -> GAP -> fc, with BatchNorm running statistics away from (0, 1)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1),
            bn1=nn.BatchNorm2d(8),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            relu2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(16, 5),
        )
    )
    model.bn1.running_mean.uniform_(-0.5, 0.5)
    model.bn1.running_var.uniform_(0.5, 2.0)
    return model.eval()


def blob_images(n: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Images with one bright square each at a random place, plus a little noise: maps have structure."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.1 * torch.randn(n, 3, size, size, generator=generator)
    for i in range(n):
        y, x = torch.randint(0, size - 10, (2,), generator=generator).tolist()
        images[i, :, y : y + 10, x : x + 10] += 2.0
    return images


def edge_map(_model: nn.Module, images: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
    """A Sobel edge magnitude of the input: a 'saliency method' that never looks at the model."""
    gray = images.mean(dim=1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    gx, gy = F.conv2d(gray, kx, padding=1), F.conv2d(gray, kx.transpose(2, 3), padding=1)
    return (gx**2 + gy**2).sqrt()[:, 0]


def constant_map(_model: nn.Module, images: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
    return torch.ones(len(images), *images.shape[-2:])


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


# ------------------------------------------------------------------------------------------ similarities
def test_spearman_hand_computed() -> None:
    # ranks (1,2,3,4) vs (1,3,2,4): sum d^2 = 2, rho = 1 - 6*2 / (4*(16-1)) = 0.8
    assert spearman(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.0, 5.0, 2.0, 9.0])) == pytest.approx(0.8, abs=1e-12)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0, abs=1e-12)
    # ties get average ranks: (1, 2.5, 2.5, 4) vs (1, 2, 3, 4): Pearson of the ranks = 4.5 / sqrt(4.5 * 5)
    assert spearman(np.array([0.0, 1.0, 1.0, 2.0]), np.arange(4.0)) == pytest.approx(
        4.5 / math.sqrt(4.5 * 5), abs=1e-12
    )
    # identical arrays are 1 exactly, constant ones too; a constant against a varying one is undefined
    assert spearman(np.full(5, 0.3), np.full(5, 0.3)) == 1.0
    assert math.isnan(spearman(np.full(4, 0.3), np.arange(4.0)))


def test_ssim_hand_computed() -> None:
    # 7x7 maps, one 7x7 window: only the centre pixel's window survives skimage's border crop, so the mean
    # SSIM is the SSIM of the whole map, with sample (N - 1) variances. a: a single 1 among zeros, b: all zeros.
    a = np.zeros((7, 7))
    a[3, 3] = 1.0
    b = np.zeros((7, 7))
    c1, c2 = (0.01 * 1) ** 2, (0.03 * 1) ** 2
    mu_a, var_a = 1 / 49, (1 - 49 * (1 / 49) ** 2) / 48  # = 1/49
    expected = (c1 * c2) / ((mu_a**2 + c1) * (var_a + c2))
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)
    assert ssim(a, a) == 1.0
    assert math.isnan(ssim(np.zeros((5, 5)), np.ones((5, 5))))


def test_hog_pearson_is_pearson_of_skimage_hog() -> None:
    from skimage.feature import hog

    rng = np.random.default_rng(0)
    a, b = rng.random((32, 32)), rng.random((32, 32))
    expected = np.corrcoef(hog(a), hog(b))[0, 1]
    assert hog_pearson(a, b) == pytest.approx(expected, abs=1e-12)
    assert hog_pearson(a, a) == 1.0
    assert math.isnan(hog_pearson(a, np.zeros((32, 32))))  # a constant map has no gradients


# ------------------------------------------------------------------------------------------ steps
def test_natural_steps_group_batchnorm_with_its_convolution() -> None:
    steps = randomization_steps(tiny_net())
    assert [s.modules for s in steps] == [("fc",), ("conv2",), ("conv1", "bn1")]
    assert [s.index for s in steps] == [1, 2, 3]


def test_given_layers_are_checked() -> None:
    model = tiny_net()
    assert [s.modules for s in randomization_steps(model, ["fc", ("conv1", "bn1")])] == [("fc",), ("conv1", "bn1")]
    with pytest.raises(ValueError, match="'conv3' is not a submodule.*fc, conv2, conv1\\+bn1"):
        randomization_steps(model, ["conv3"])
    with pytest.raises(ValueError, match="'relu1' holds no parameters"):
        randomization_steps(model, ["relu1"])


def test_coarse_steps_keep_the_first_blocks_and_group_the_rest_in_order() -> None:
    units = nn.Sequential(*(nn.Linear(2, 2) for _ in range(11)))  # natural steps: "10", "9", ..., "0"
    steps = coarse_steps(units, 6)
    assert steps == [("10",), ("9",), ("8",), ("7", "6", "5"), ("4", "3", "2"), ("1", "0")]
    assert coarse_steps(units, 2, fine=3) == [("10",), tuple(str(i) for i in range(9, -1, -1))]
    assert coarse_steps(units, 11) == coarse_steps(units, 50) == [(str(i),) for i in range(10, -1, -1)]
    assert [s.modules for s in randomization_steps(units, steps)] == steps  # usable as layers=
    with pytest.raises(ValueError, match="positive int"):
        coarse_steps(units, 0)


def test_short_step_label_names_a_group_by_its_ends_and_size() -> None:
    assert short_step_label("conv1+bn1") == "conv1+bn1"
    assert short_step_label("a+b+c") == "a+b+c"
    group = "+".join([f"blocks.{i}" for i in range(16, -1, -1)] + ["stem"])
    assert short_step_label(group) == "blocks.16…stem (18)"


def test_randomize_is_seeded_resets_batchnorm_and_keeps_the_rng() -> None:
    first, second = tiny_net(), tiny_net()
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    randomize_(first, Step(3, ("conv1", "bn1")), seed=5)
    assert torch.equal(torch.rand(1), expected_next)  # the caller's random stream is untouched
    randomize_(second, Step(3, ("conv1", "bn1")), seed=5)
    assert torch.equal(first.conv1.weight, second.conv1.weight)
    assert not torch.equal(first.conv1.weight, tiny_net().conv1.weight)
    torch.manual_seed(5 + 3)  # the documented seed of unit 3
    assert torch.equal(first.conv1.weight, nn.Conv2d(3, 8, 3, padding=1).weight)
    assert torch.equal(first.bn1.running_mean, torch.zeros(8)) and torch.equal(first.bn1.running_var, torch.ones(8))
    assert torch.equal(first.conv2.weight, tiny_net().conv2.weight)  # other units untouched


# ------------------------------------------------------------------------------------------ the test itself
def test_model_unchanged_after_a_call_and_after_an_exception() -> None:
    model = tiny_net()
    model.train()  # a mode the call must not change either
    before = snapshot(model)
    table = parameter_randomization(model, ["Grad-CAM", edge_map], blob_images(4), target_layer="conv2")
    assert_same_state(model, before)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert len(table) == 2 * 4 * (1 + 3) + 2 * 4  # steps 0..3 per image and method, 4 reference pairs

    calls = []

    def fails_at_second_step(m: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom inside a step")
        return edge_map(m, images, targets)

    for mode in ("cascading", "independent"):
        calls.clear()
        with pytest.raises(RuntimeError, match="boom"):
            parameter_randomization(model, fails_at_second_step, blob_images(4), target_layer="conv2", mode=mode)
        assert_same_state(model, before)


def test_step_zero_is_exactly_one_and_targets_are_fixed() -> None:
    model = tiny_net()
    images = blob_images(4)
    table = parameter_randomization(model, "Grad-CAM++", images, target_layer="conv2")
    zero = table[(table["mode"] == "cascading") & (table["step"] == 0)]
    for column in ("spearman", "spearman_abs", "ssim", "hog_pearson", "spearman_raw", "spearman_abs_raw"):
        assert (zero[column] == 1.0).all(), column
    predicted = model(images).argmax(1).tolist()
    for step, part in table[table["mode"] == "cascading"].groupby("step"):
        assert part["target"].tolist() == predicted, step
    assert list(table[table["mode"] == "cascading"].drop_duplicates("step")["layer"]) == [
        "trained",
        "fc",
        "conv2",
        "conv1+bn1",
    ]


def test_a_map_that_ignores_the_model_fails_one_that_reads_the_last_layer_passes() -> None:
    model = tiny_net()
    table = parameter_randomization(model, ["Grad-CAM", edge_map, constant_map], blob_images(8), target_layer="conv2")
    verdicts = pass_table(table)
    assert verdicts.loc["edge_map", "verdict"] == "fails"
    assert verdicts.loc["edge_map", "lowest"] == 1.0  # unchanged at every step: the input's edges
    assert verdicts.loc["constant_map", "verdict"] == "fails"
    assert verdicts.loc["Grad-CAM", "verdict"] == "passes"
    # the reference level of these blob images is near 0; with fc and conv2 random Grad-CAM is below it, and with
    # conv1 random too the random network's response to the bright square shows again (last > lowest)
    assert verdicts.loc["Grad-CAM", "at_reference"] == "conv2"
    assert verdicts.loc["Grad-CAM", "lowest"] < verdicts.loc["Grad-CAM", "reference"] < verdicts.loc["Grad-CAM", "last"]
    # Grad-CAM at conv2 reads fc: randomising fc alone (step 1) already changes the maps
    step1 = table[(table["method"] == "Grad-CAM") & (table["step"] == 1) & (table["mode"] == "cascading")]
    assert step1["spearman"].mean() < 0.9


def test_independent_step_k_randomises_unit_k_as_cascading_does() -> None:
    model = tiny_net()
    images = blob_images(4)
    cascading = parameter_randomization(model, "Grad-CAM", images, target_layer="conv2", seed=3)
    independent = parameter_randomization(model, "Grad-CAM", images, target_layer="conv2", seed=3, mode="independent")
    # step 1 randomises fc in both modes, with the same seed: the same maps, the same numbers
    a = cascading[(cascading["step"] == 1) & (cascading["mode"] == "cascading")]["spearman"].to_numpy()
    b = independent[(independent["step"] == 1) & (independent["mode"] == "independent")]["spearman"].to_numpy()
    np.testing.assert_array_equal(a, b)
    # step 3 randomises conv1+bn1 alone in independent mode, with fc and conv2 random too in cascading mode
    c3 = cascading[(cascading["step"] == 3) & (cascading["mode"] == "cascading")]["spearman"].to_numpy()
    i3 = independent[(independent["step"] == 3) & (independent["mode"] == "independent")]["spearman"].to_numpy()
    assert not np.allclose(c3, i3)
    assert set(independent["mode"]) == {"independent", "reference"}


def test_bad_input_is_named() -> None:
    model = tiny_net()
    with pytest.raises(ValueError, match="mode must be one of"):
        parameter_randomization(model, "Grad-CAM", blob_images(2), target_layer="conv2", mode="top_down")
    with pytest.raises(ValueError, match="unknown method 'GradCAM'"):
        parameter_randomization(model, "GradCAM", blob_images(2), target_layer="conv2")
    with pytest.raises(ValueError, match="image_ids must give 2 distinct ids"):
        parameter_randomization(model, "Grad-CAM", blob_images(2), target_layer="conv2", image_ids=["a", "a"])


def test_score_methods_take_max_channels_and_kept_maps_are_the_returned_maps() -> None:
    model = tiny_net()
    images = blob_images(3)
    result = run_randomization(model, "Score-CAM", images, target_layer="conv2",
                               explainer_options={"max_channels": 4}, keep_maps=2)  # fmt: skip
    assert result.maps["Score-CAM"].shape == (1 + 3, 2, 32, 32)
    from gradscorecam import ScoreCAM

    trained = ScoreCAM(model, "conv2", max_channels=4)(images, result.targets)
    np.testing.assert_allclose(result.maps["Score-CAM"][0], trained[:2].numpy(), atol=1e-6)


# ------------------------------------------------------------------------------------------ cross-check: Quantus
def two_layer_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(conv1=nn.Conv2d(3, 8, 3, padding=1), relu1=nn.ReLU(), conv2=nn.Conv2d(8, 12, 3, padding=1),
                    relu2=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(12, 5))
    ).eval()  # fmt: skip


def test_spearman_agrees_with_quantus_mprt() -> None:
    """Quantus' MPRT (``quantus.MPRT``, Hedström et al.) on the same model, maps, layers and seeds.

    Where they agree, exactly: Quantus re-initialises every module that has ``reset_parameters`` (here fc,
    conv2, conv1, output first: our ``layers``) right after ``torch.manual_seed(seed + 1)`` and compares the
    maps with ``scipy.stats.spearmanr``. Our unit j gets ``seed + j``, so the first step (fc) is the same random
    layer in both, and every independent step is too when each layer is passed alone (it is then unit 1).
    Where they differ: cascading steps 2 and 3, because Quantus re-seeds ``seed + 1`` before *every* layer
    (identically shaped layers would get identical weights) and we do not; both then compare different random
    networks, so the numbers differ, though both have fallen far from 1. Quantus' own defaults also take
    ``abs`` and normalise by the maximum before comparing, which does not change the Spearman of our
    non-negative maps (a positive scale keeps the ranks); they are switched off here to compare the same arrays.
    """
    quantus = pytest.importorskip("quantus")
    from gradscorecam import GradCAM

    model = two_layer_net()
    images = blob_images(6)
    targets = model(images).argmax(1)

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        maps = GradCAM(model, "conv2")(torch.as_tensor(inputs), torch.as_tensor(targets).long())
        return maps[:, None].numpy()

    def grad_cam(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (
            GradCAM(m, "conv2").explain(x, t).saliency(tuple(x.shape[-2:]))
        )  # the returned map, finalised again: same

    def quantus_scores(order: str) -> dict[str, list[float]]:
        metric = quantus.MPRT(layer_order=order, seed=7, abs=False, normalise=False, disable_warnings=True,
                              display_progressbar=False)  # fmt: skip
        return metric(model=model, x_batch=images.numpy(), y_batch=targets.numpy(), a_batch=None,
                      explain_func=explain, device="cpu", batch_size=6)  # fmt: skip

    layers = ["fc", "conv2", "conv1"]
    theirs = quantus_scores("top_down")
    assert list(theirs) == ["original", *layers]
    ours = parameter_randomization(model, grad_cam, images, target_layer="conv2", layers=layers, seed=7)
    ours = ours[ours["mode"] == "cascading"]
    np.testing.assert_allclose(theirs["original"], 1.0, atol=1e-12)
    np.testing.assert_allclose(ours[ours["step"] == 1]["spearman"], theirs["fc"], atol=1e-9)
    for step, name in ((2, "conv2"), (3, "conv1")):  # differently seeded random layers: different numbers
        assert not np.allclose(ours[ours["step"] == step]["spearman"], theirs[name], atol=1e-6)

    independent = quantus_scores("independent")
    for name in layers:
        alone = parameter_randomization(model, grad_cam, images, target_layer="conv2", layers=[name], seed=7,
                                        mode="independent")  # fmt: skip
        np.testing.assert_allclose(alone[alone["step"] == 1]["spearman"], independent[name], atol=1e-9)


def test_a_map_that_goes_blank_passes_and_says_so() -> None:
    model = tiny_net()
    trained = snapshot(model)["fc.weight"]

    def blank_when_random(m: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if torch.equal(m.fc.weight, trained):
            return edge_map(m, images, targets)
        return torch.zeros(len(images), *images.shape[-2:])

    table = parameter_randomization(model, blank_when_random, blob_images(4), target_layer="conv2")
    later = table[(table["mode"] == "cascading") & (table["step"] > 0)]
    assert later["spearman"].isna().all() and (later["ssim"] < 1).all()
    verdict = pass_table(table).loc["blank_when_random"]
    assert verdict["verdict"] == "passes" and "blank" in verdict["reason"]


# Notebook 07 itself runs once in the suite, inside the smoke pipeline test
# (tests/test_pipeline.py::check_sanity_notebook checks its outputs there).
