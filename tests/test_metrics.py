"""Faithfulness and localisation metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gradscorecam import metrics
from gradscorecam.errors import InputImageError

pytestmark = pytest.mark.usefixtures("one_thread")


class SumModel(nn.Module):
    """logits = [sum of all input values, sum - shift]: every score below can be worked out by hand."""

    def __init__(self, shift: float = 0.0) -> None:
        super().__init__()
        self.shift = shift
        self.unused = nn.Linear(1, 1)  # gives the model a parameter, as real models have

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).sum(1)
        return torch.stack([s, s - self.shift], dim=1)


class ShiftedModel(nn.Module):
    """logits = [s, s - 2] with s = sum: softmax(class 0) = sigmoid(2) whatever the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).sum(1)
        return torch.stack([s, s - 2.0], dim=1)


# ------------------------------------------------------------------------------ Average Drop / Increase
def test_average_drop_is_relative_to_Y_zero_for_increases_and_over_all_images():
    Y = [0.8, 0.5, 0.2]
    O = [0.4, 0.6, 0.1]
    # drops: (0.8-0.4)/0.8 = 50 % (not the absolute 40 points), an increase counts 0, (0.2-0.1)/0.2 = 50 %
    assert metrics.drop_percent(Y, O) == pytest.approx([50.0, 0.0, 50.0])
    # the average is over all N = 3 images, not over the two with a drop (which would give 50 %)
    assert metrics.average_drop(Y, O) == pytest.approx(100.0 / 3)
    assert metrics.average_increase(Y, O) == pytest.approx(100.0 / 3)


def test_increase_is_strict():
    assert metrics.average_increase([0.5, 0.5], [0.5, 0.5000001]) == pytest.approx(50.0)


def test_average_drop_leaves_out_non_positive_scores_as_summarize_does():
    # logits: Y = -1 has no defined drop; the mean is over the other two images, (50 + 0) / 2, with a warning
    Y, O = [2.0, -1.0, 0.5], [1.0, -2.0, 0.75]
    assert math.isnan(metrics.drop_percent([-1.0], [-2.0])[0])
    with pytest.warns(UserWarning, match="over 2 of 3 images: 1 have Y <= 0"):
        assert metrics.average_drop(Y, O) == pytest.approx(25.0)
    with pytest.warns(UserWarning):
        assert math.isnan(metrics.average_drop([-1.0], [0.0]))
    # the same rows through summarize (which reads the runner's per-row drop): the same mean, and the count
    from gradscorecam import summarize

    rows = pd.DataFrame({"image_id": ["a", "b", "c"], "method": "Grad-CAM", "Y": Y, "O": O,
                         "drop": metrics.drop_percent(Y, O), "increase": metrics.increase_percent(Y, O),
                         "seconds": 0.1, "note": ""})  # fmt: skip
    summary = summarize(rows).loc["Grad-CAM"]
    assert summary["average_drop"] == pytest.approx(25.0) and summary["average_drop_n"] == 2
    assert summary["undefined_drop"] == 1 and summary["degenerate_maps"] == 0
    assert summary["average_increase"] == pytest.approx(100 / 3)  # increase is defined for every image


def test_explanation_scores_by_hand_in_logits_and_probabilities():
    model = SumModel(shift=0.0)
    images = torch.ones(1, 3, 2, 2)
    saliency = torch.tensor([[[1.0, 0.5], [0.0, 0.25]]])
    # clean sum 12; masked sum 3 * (1 + 0.5 + 0 + 0.25) = 5.25
    Y, O = metrics.explanation_scores(model, images, saliency, [0], score="logit")
    assert Y.tolist() == pytest.approx([12.0]) and O.tolist() == pytest.approx([5.25])
    assert metrics.average_drop(Y, O) == pytest.approx((12 - 5.25) / 12 * 100)
    # probabilities with logits [s, s]: 0.5 for any input, so no drop
    Y, O = metrics.explanation_scores(model, images, saliency, [0], score="probability")
    assert Y.tolist() == pytest.approx([0.5]) and O.tolist() == pytest.approx([0.5])


def test_probability_and_logit_differ_as_documented():
    # A mask that lowers every logit equally is a drop in logit but none in probability (softmax is
    # shift-invariant): here softmax(class 0) = sigmoid(2) = 0.8808 for every input.
    model = ShiftedModel()
    images = torch.ones(2, 3, 2, 2)
    saliency = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])
    Y, O = metrics.explanation_scores(model, images, saliency, [0, 0], score="logit")
    assert metrics.drop_percent(Y, O) == pytest.approx([50.0, 50.0])
    Y, O = metrics.explanation_scores(model, images, saliency, [0, 0], score="probability")
    assert Y.tolist() == pytest.approx([1 / (1 + math.exp(-2))] * 2)
    assert metrics.average_drop(Y, O) == pytest.approx(0.0, abs=1e-9)


def test_pixel_and_normalized_masking_by_hand():
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    pixels = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 1, 3).expand(1, 3, 1, 3)
    images = (pixels - 0.5) / 0.25  # normalised: [2, 0, -2]
    saliency = torch.full((1, 1, 3), 0.5)
    normalized = metrics.explanation_maps(images, saliency, "normalized")
    assert normalized[0, 0, 0].tolist() == pytest.approx([1.0, 0.0, -1.0])  # X * S
    pixel = metrics.explanation_maps(images, saliency, "pixel", mean, std)
    # pixels * 0.5 = [0.5, 0.25, 0], normalised: [0, -1, -2]
    assert pixel[0, 0, 0].tolist() == pytest.approx([0.0, -1.0, -2.0])
    with pytest.raises(ValueError, match="mean and std"):
        metrics.explanation_maps(images, saliency, "pixel")


def test_top_percent_keeps_the_most_salient_pixels_with_their_values():
    saliency = torch.tensor([[[0.75, 0.125], [0.5, 0.25]]])
    assert metrics.keep_top_percent(saliency, 50).tolist() == [[[0.75, 0.0], [0.5, 0.0]]]
    ties = torch.full((1, 2, 2), 0.5)
    assert metrics.keep_top_percent(ties, 50).tolist() == [[[0.5, 0.5], [0.0, 0.0]]]  # row-major tie-break
    model = SumModel()
    images = torch.ones(1, 1, 2, 2)
    _, O = metrics.explanation_scores(model, images, saliency, [0], score="logit", top_percent=50)
    assert O.tolist() == pytest.approx([1.25])


def test_explanation_scores_default_target_is_top_class_and_model_state_is_kept():
    model = SumModel(shift=-1.0).train()  # class 1 = s + 1 is always the top class
    Y, _ = metrics.explanation_scores(model, torch.ones(1, 1, 2, 2), torch.ones(1, 2, 2), None, score="logit")
    assert Y.tolist() == pytest.approx([5.0])
    assert model.training


# --------------------------------------------------------------------------------- Deletion / Insertion
def test_deletion_and_insertion_curves_by_hand():
    model = SumModel()
    images = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    saliency = torch.tensor([[[0.1, 0.2], [0.9, 0.5]]])  # order: 3, 4, 2, 1
    curves = metrics.perturbation_curves(model, images, saliency, [0], mode="deletion", steps=4, score="logit")
    assert curves[0].tolist() == pytest.approx([10.0, 7.0, 3.0, 1.0, 0.0])
    # trapezoid on x = 0, 1/4, ..., 1: (21 - (10 + 0) / 2) / 4
    assert metrics.deletion_auc(model, images, saliency, [0], steps=4, score="logit").tolist() == pytest.approx([4.0])
    inserted = metrics.perturbation_curves(
        model, images, saliency, [0], mode="insertion", steps=2, baseline="zeros", score="logit"
    )
    assert inserted[0].tolist() == pytest.approx([0.0, 7.0, 10.0])
    assert metrics.curve_auc(inserted).tolist() == pytest.approx([(17 - 5) / 2])


def test_insertion_from_blur_of_a_constant_image_is_flat():
    model = SumModel()
    images = torch.full((1, 3, 12, 12), 0.25)
    saliency = torch.rand(1, 12, 12, generator=torch.Generator().manual_seed(0))
    curves = metrics.perturbation_curves(model, images, saliency, [0], mode="insertion", steps=3, score="logit")
    assert curves[0].tolist() == pytest.approx([0.25 * 3 * 144] * 4, rel=1e-5)


def test_deletion_batches_give_the_same_curves():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
    images, saliency = torch.randn(3, 3, 8, 8), torch.rand(3, 8, 8)
    one = metrics.perturbation_curves(model, images, saliency, [0, 1, 2], steps=5, batch_size=1)
    many = metrics.perturbation_curves(model, images, saliency, [0, 1, 2], steps=5, batch_size=64)
    assert torch.allclose(one, many, atol=1e-6)


# ---------------------------------------------------------------------------------------- pointing game
def _peak(y: int, x: int, size: int = 20) -> torch.Tensor:
    saliency = torch.zeros(1, size, size)
    saliency[0, y, x] = 1.0
    return saliency


def test_pointing_game_inside_and_tolerance():
    saliency = _peak(y=5, x=10)
    assert metrics.pointing_game(saliency, [[(8, 3, 12, 7)]]).tolist() == [True]  # inside
    # box (0, 0, 4, 4): the peak is 6 columns right and 1 row below its corner: distance sqrt(37) = 6.08
    assert metrics.pointing_game(saliency, [[(0, 0, 4, 4)]], tolerance=15).tolist() == [True]
    assert metrics.pointing_game(saliency, [[(0, 0, 4, 4)]], tolerance=6).tolist() == [False]
    assert metrics.pointing_game(saliency, [[(0, 0, 4, 4)]], tolerance=6.1).tolist() == [True]
    # box (0, 15, 2, 19): dx = 8, dy = 10, distance 12.8: a hit at 15 pixels, a miss at 12
    assert metrics.pointing_game(saliency, [[(0, 15, 2, 19)]], tolerance=15).tolist() == [True]
    assert metrics.pointing_game(saliency, [[(0, 15, 2, 19)]], tolerance=12).tolist() == [False]
    # any of several boxes counts; x1, y1 are inclusive
    assert metrics.pointing_game(saliency, [[(0, 0, 1, 1), (10, 5, 10, 5)]], tolerance=0).tolist() == [True]
    assert metrics.pointing_game(saliency, [[(0, 0, 9, 4)]], tolerance=0).tolist() == [False]


def test_pointing_game_batch_and_first_maximum():
    saliency = torch.cat([_peak(0, 0), _peak(19, 19)])
    boxes = [[(15, 15, 19, 19)], [(15, 15, 19, 19)]]
    assert metrics.pointing_game(saliency, boxes, tolerance=0).tolist() == [False, True]
    ties = torch.zeros(1, 20, 20)
    ties[0, 2, 18] = ties[0, 18, 2] = 1.0  # first in row-major order: (x=18, y=2)
    assert metrics.pointing_game(ties, [[(16, 0, 19, 4)]], tolerance=0).tolist() == [True]
    assert metrics.pointing_game(ties, [[(0, 16, 4, 19)]], tolerance=0).tolist() == [False]
    with pytest.raises(ValueError, match="no boxes"):
        metrics.pointing_game(saliency, [[(0, 0, 1, 1)], []])


def test_energy_pointing_game_by_hand():
    saliency = torch.ones(1, 10, 10)
    assert metrics.energy_pointing_game(saliency, [[(0, 0, 4, 4)]]).tolist() == pytest.approx([0.25])
    # overlapping boxes count once: 25 + 25 - 9 = 41 of 100
    assert metrics.energy_pointing_game(saliency, [[(0, 0, 4, 4), (2, 2, 6, 6)]]).tolist() == pytest.approx([0.41])
    weighted = torch.zeros(1, 10, 10)
    weighted[0, 0, 0], weighted[0, 9, 9] = 3.0, 1.0
    assert metrics.energy_pointing_game(weighted, [[(0, 0, 0, 0)]]).tolist() == pytest.approx([0.75])
    assert np.isnan(metrics.energy_pointing_game(torch.zeros(1, 10, 10), [[(0, 0, 4, 4)]])[0])


def test_pointing_game_default_tolerance_scales_with_the_map():
    # 15 px at 224 x 224; on a 32 x 32 map 15 * 32 / 224 = 2.14 px, not half the image
    assert metrics.default_tolerance((224, 224)) == 15.0
    assert metrics.default_tolerance((3, 32, 48)) == pytest.approx(15 * 32 / 224)
    saliency = _peak(y=5, x=10, size=32)
    assert metrics.pointing_game(saliency, [[(13, 5, 20, 9)]]).tolist() == [False]  # 3 px away: a miss at 2.14 px
    assert metrics.pointing_game(saliency, [[(12, 5, 20, 9)]]).tolist() == [True]  # 2 px away: a hit
    big = _peak(y=5, x=10, size=224)
    assert metrics.pointing_game(big, [[(25, 5, 30, 9)]]).tolist() == [True]  # 15 px at 224: the published rule
    assert metrics.pointing_game(big, [[(26, 5, 30, 9)]]).tolist() == [False]


def test_localisation_metrics_refuse_nan_maps():
    saliency = torch.zeros(2, 10, 10)
    saliency[1, 3, 3] = float("nan")
    with pytest.raises(InputImageError, match="saliency maps hold NaN.*item 1"):
        metrics.pointing_game(saliency, [[(0, 0, 4, 4)], [(0, 0, 4, 4)]])
    with pytest.raises(InputImageError, match="saliency maps hold NaN"):
        metrics.energy_pointing_game(saliency, [[(0, 0, 4, 4)], [(0, 0, 4, 4)]])
    with pytest.raises(InputImageError, match="infinite"):
        metrics.object_scores(np.full((10, 10), np.inf), [(0, 0, 4, 4), (5, 5, 9, 9)])


# ------------------------------------------------------------------------------- objects (Figure 5)
def test_objects_reached_by_hand():
    saliency = np.zeros((100, 100))
    saliency[10, 10] = 1.0  # peak inside box A
    saliency[50, 80] = 0.6  # second object: at least half of the peak, inside box B
    saliency[90, 5] = 0.4  # third: too weak
    boxes = [(5, 5, 20, 20), (70, 40, 90, 60), (0, 85, 10, 99)]
    assert metrics.objects_reached(saliency, boxes) == [True, True, False]
    assert metrics.objects_reached(saliency, boxes, threshold=0.3) == [True, True, True]
    # tolerance: a box 10 px from the peak is reached at 15 px, not at 5 px, nor at the default for a 100 px
    # map (15 * 100 / 224 = 6.7 px)
    near = [(21, 21, 30, 30)]
    assert metrics.objects_reached(saliency, near, tolerance=15) == [True]
    assert metrics.objects_reached(saliency, near, tolerance=5) == [False]
    assert metrics.objects_reached(saliency, near) == [False]
    assert metrics.objects_reached(saliency, [(16, 16, 30, 30)]) == [True]  # 6 px: within the 6 whole pixels
    assert metrics.objects_reached(saliency, [(17, 17, 30, 30)]) == [False]  # 7 px
    assert metrics.objects_reached(np.zeros((10, 10)), [(0, 0, 5, 5)]) == [False]


def _blob(size: int, centre: tuple[int, int], sigma: float = 4.0, height: float = 1.0) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return height * np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))


# two objects: left box x 5..19, right box x 40..54, both rows 20..39, on a 60 x 60 map
TWO_BOXES = [(5, 20, 19, 39), (40, 20, 54, 39)]


def test_object_scores_two_blobs_one_blob_and_a_blob_between():
    two = _blob(60, (12, 30)) + _blob(60, (47, 30), height=0.8)
    assert metrics.object_scores(two, TWO_BOXES).found.tolist() == [True, True]
    assert metrics.object_scores(two, TWO_BOXES).objects_found == 1.0
    one = _blob(60, (12, 30))
    assert metrics.object_scores(one, TWO_BOXES).found.tolist() == [True, False]
    assert metrics.object_scores(one, TWO_BOXES).objects_found == 0.5
    # a broad blob between the boxes: its tails enter both, but neither holds a maximum of its own -> 0/2,
    # though objects_reached (lenient) reaches both and the energy game gives the boxes most of the energy
    between = _blob(60, (30, 30), sigma=12.0)
    assert metrics.object_scores(between, TWO_BOXES).found.tolist() == [False, False]
    assert metrics.objects_reached(between, TWO_BOXES, tolerance=15) == [True, True]
    # a second blob too weak (0.4 < 0.5 of the peak) does not count
    weak = _blob(60, (12, 30)) + _blob(60, (47, 30), height=0.4)
    assert metrics.object_scores(weak, TWO_BOXES).found.tolist() == [True, False]
    assert metrics.object_scores(weak, TWO_BOXES, threshold=0.3).found.tolist() == [True, True]


def test_object_scores_a_peak_shared_by_two_boxes_counts_for_neither():
    saliency = _blob(60, (30, 30))
    overlapping = [(20, 20, 35, 40), (25, 20, 45, 40)]  # the peak (30, 30) lies in both
    assert metrics.object_scores(saliency, overlapping).found.tolist() == [False, False]
    apart = [(20, 20, 28, 40), (29, 20, 45, 40)]  # now only in the second
    assert metrics.object_scores(saliency, apart).found.tolist() == [False, True]


def test_object_scores_count_a_plateau_as_one_maximum():
    # a uniform map is one flat maximum over both boxes: neither box holds a maximum of its own
    assert metrics.object_scores(np.ones((60, 60)), TWO_BOXES).found.tolist() == [False, False]
    # one flat-topped blob covering both boxes: one maximum, shared -> 0/2
    flat = np.minimum(_blob(60, (30, 30), sigma=20.0), 0.7)
    assert metrics.object_scores(flat, TWO_BOXES).found.tolist() == [False, False]
    # two flat-topped blobs, one per box: two separate plateaus -> 2/2
    two = np.minimum(_blob(60, (12, 30)), 0.6) + np.minimum(_blob(60, (47, 30)), 0.6)
    assert metrics.object_scores(two, TWO_BOXES).found.tolist() == [True, True]


def test_object_energy_by_hand():
    # a uniform map: every box holds exactly its area's share of the energy: ratio 1 (chance level)
    uniform = np.ones((10, 10))
    scores = metrics.object_scores(uniform, [(0, 0, 4, 4), (5, 5, 9, 6)])
    assert scores.energy.tolist() == pytest.approx([1.0, 1.0])
    # all energy in box A (25 of 100 pixels): A gets (1) / (0.25) = 4, B nothing: 0; the worst object is 0
    saliency = np.zeros((10, 10))
    saliency[0:5, 0:5] = 1.0
    scores = metrics.object_scores(saliency, [(0, 0, 4, 4), (5, 5, 9, 9)])
    assert scores.energy.tolist() == pytest.approx([4.0, 0.0])
    assert scores.min_object_energy == 0.0
    # 3 units in pixel (0, 0), 1 unit in pixel (9, 9): box of 1 pixel at (0, 0) holds 0.75 of the energy in
    # 1 % of the area -> 75; box of 4 pixels (8..9, 8..9) holds 0.25 in 4 % -> 6.25
    weighted = np.zeros((10, 10))
    weighted[0, 0], weighted[9, 9] = 3.0, 1.0
    scores = metrics.object_scores(weighted, [(0, 0, 0, 0), (8, 8, 9, 9)])
    assert scores.energy.tolist() == pytest.approx([75.0, 6.25])
    assert scores.found.tolist() == [True, False]  # (9, 9) is a local maximum, but 1.0 < 0.5 x the peak 3.0


def test_object_scores_of_an_all_zero_map_and_bad_boxes():
    scores = metrics.object_scores(np.zeros((10, 10)), [(0, 0, 4, 4), (5, 5, 9, 9)])
    assert scores.found.tolist() == [False, False] and np.isnan(scores.energy).all()
    with pytest.raises(ValueError, match="no boxes"):
        metrics.object_scores(np.ones((10, 10)), [])
    with pytest.raises(ValueError, match="one \\(H, W\\) map"):
        metrics.object_scores(np.ones((2, 10, 10)), [(0, 0, 1, 1)])
