"""The comparison grid and its helpers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt
from PIL import Image

from gradscorecam.plotting import RANDOM_WEIGHTS_MARK, method_grid, save_figure, to_display_image


def test_to_display_image_undoes_normalisation():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1).expand(3, 2, 2)
    normalised = (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    shown = to_display_image(normalised, mean, std)
    assert shown.shape == (2, 2, 3)
    assert np.allclose(shown[0, 0], [0.0, 0.5, 1.0], atol=1e-6)
    # values outside [0, 1] after undoing the normalisation are clipped for display
    assert to_display_image(torch.full((3, 1, 1), 10.0), mean, std).max() == 1.0


def test_grid_layout_text_cell_and_mark(tmp_path):
    images = [np.zeros((8, 8, 3)), np.ones((8, 8, 3))]
    ramp = torch.linspace(0, 1, 64).view(8, 8)
    fig = method_grid(
        images,
        {"CAM": "CAM is not defined for VGG16", "Grad-CAM": [ramp, ramp.T]},
        row_titles=["cat (p = 0.90)", "dog (p = 0.50)"],
        captions={"Grad-CAM": ["2/2 objects", "1/2 objects"]},
        boxes=[[(1, 1, 4, 4)], []],
        random_weights=True,
    )
    grid_axes = fig.axes[:6]
    assert len(fig.axes) == 7  # 2 rows x 3 columns + one colour bar
    assert [ax.get_title() for ax in grid_axes[:3]] == ["input", "CAM", "Grad-CAM"]
    cam_cell = grid_axes[1]
    assert [t.get_text() for t in cam_cell.texts] == ["CAM is not defined for VGG16"]
    assert len(cam_cell.images) == 0  # no fake map
    gradcam_cell = grid_axes[2]
    np.testing.assert_allclose(gradcam_cell.images[1].get_array(), ramp.numpy())
    assert gradcam_cell.get_xlabel() == "2/2 objects"
    assert len(gradcam_cell.patches) == 1 and len(grid_axes[5].patches) == 0
    assert grid_axes[3].get_ylabel() == "dog (p = 0.50)"
    assert RANDOM_WEIGHTS_MARK in [t.get_text() for t in fig.texts]
    written = save_figure(fig, tmp_path / "sub" / "figure2_test")
    plt.close(fig)
    assert [p.name for p in written] == ["figure2_test.png", "figure2_test.pdf"]
    assert Image.open(written[0]).size[0] > Image.open(written[0]).size[1]  # 3 columns wider than 2 rows
    assert Image.open(written[0]).text["Description"] == "grid 2x3"


def test_no_mark_without_random_weights():
    fig = method_grid([np.zeros((4, 4, 3))], {"Grad-CAM": [np.zeros((4, 4))]})
    assert RANDOM_WEIGHTS_MARK not in [t.get_text() for t in fig.texts]
    plt.close(fig)


@pytest.mark.parametrize("fmt", ["png", "pdf"])
def test_save_figure_replaces_previous_output(tmp_path, fmt):
    fig = plt.figure()
    (first,) = save_figure(fig, tmp_path / "f", formats=(fmt,))
    (second,) = save_figure(fig, tmp_path / "f.png", formats=(fmt,))
    plt.close(fig)
    assert first == second and first.suffix == f".{fmt}"
