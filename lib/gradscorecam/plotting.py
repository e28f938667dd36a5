"""Figures: saliency overlays in a method-comparison grid, the random-weights mark, saving PNG and PDF.

The grid is the layout of the paper's Figures 2–5: one row per image, the input first, then one column per
method, each map overlaid on the input with a shared colour bar. A method that is not defined for the
model (CAM on VGG16) gets a cell that says so instead of a map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

RANDOM_WEIGHTS_MARK = "random weights — pipeline check only"
Box = tuple[float, float, float, float]


def to_display_image(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the model's normalisation: (3, H, W) normalised tensor -> (H, W, 3) float array in [0, 1]."""
    mean_t = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    pixels = (image.detach() * std_t + mean_t).clamp(0, 1)
    return pixels.permute(1, 2, 0).cpu().numpy()


def overlay(ax: matplotlib.axes.Axes, image: np.ndarray, saliency: np.ndarray | torch.Tensor,
            alpha: float = 0.5, cmap: str = "jet") -> matplotlib.image.AxesImage:  # fmt: skip
    """Draw ``image`` with ``saliency`` (H, W, values in [0, 1]) on top; returns the map's artist for a colour bar."""
    if isinstance(saliency, torch.Tensor):
        saliency = saliency.detach().cpu().numpy()
    ax.imshow(image)
    artist = ax.imshow(saliency, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    return artist


def draw_boxes(ax: matplotlib.axes.Axes, boxes: Sequence[Box], color: str = "white") -> None:
    """Outline ground-truth boxes (x0, y0, x1, y1) in image pixels."""
    for x0, y0, x1, y1 in boxes:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.5))


def method_grid(
    images: Sequence[np.ndarray],
    maps: Mapping[str, torch.Tensor | Sequence[np.ndarray | torch.Tensor] | str],
    *,
    row_titles: Sequence[str] | None = None,
    boxes: Sequence[Sequence[Box]] | None = None,
    captions: Mapping[str, Sequence[str]] | None = None,
    random_weights: bool = False,
    title: str | None = None,
    alpha: float = 0.5,
    cell_size: float = 2.0,
) -> Figure:
    """One row per image: the input, then each method's map overlaid, with one shared colour bar.

    Args:
        images: display images (H, W, 3) in [0, 1], e.g. from :func:`to_display_image`.
        maps: method name -> one saliency map per image, or a string saying why the method has no map for
            this model (drawn as a text cell, never as a fake map).
        row_titles: one title per row (e.g. "tabby cat (p = 0.83)").
        boxes: per image, ground-truth boxes to outline on every cell.
        captions: method name -> one short caption per image, shown under the cell (e.g. pointing hits).
        random_weights: stamp :data:`RANDOM_WEIGHTS_MARK` across the figure.
    """
    methods = list(maps)
    rows, cols = len(images), 1 + len(methods)
    fig, axes = plt.subplots(rows, cols, figsize=(cell_size * cols + 0.6, cell_size * rows + 0.4), squeeze=False)
    artist = None
    for r, image in enumerate(images):
        axes[r, 0].imshow(image)
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
        if row_titles is not None:
            axes[r, 0].set_ylabel(row_titles[r], fontsize=8)
        for c, method in enumerate(methods, start=1):
            ax = axes[r, c]
            entry = maps[method]
            if isinstance(entry, str):
                ax.set_facecolor("0.92")
                ax.text(0.5, 0.5, entry, ha="center", va="center", wrap=True, fontsize=7, transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                artist = overlay(ax, image, entry[r], alpha=alpha)
            if boxes is not None:
                draw_boxes(ax, boxes[r])
            if captions is not None and method in captions:
                ax.set_xlabel(captions[method][r], fontsize=7)
        if boxes is not None:
            draw_boxes(axes[r, 0], boxes[r])
    axes[0, 0].set_title("input", fontsize=9)
    for c, method in enumerate(methods, start=1):
        axes[0, c].set_title(method, fontsize=9)
    height = fig.get_size_inches()[1]
    top = 1 - (0.75 if title else 0.35) / height  # room for the column titles (and the figure title) in inches
    fig.subplots_adjust(left=0.06, right=0.9, top=top, bottom=0.04, wspace=0.05, hspace=0.12)
    if artist is not None:
        cax = fig.add_axes((0.915, 0.1, 0.015, 0.8))
        fig.colorbar(artist, cax=cax, label="saliency")
    if title:
        fig.suptitle(title, fontsize=10)
    if random_weights:
        mark_random_weights(fig)
    fig.set_label(f"grid {rows}x{cols}" + (f": {title}" if title else ""))  # saved as the PNG's description
    return fig


def finish_figure(fig: Figure, title: str | None, random_weights: bool, fontsize: float = 10) -> Figure:
    """Title, tight layout, and the random-weights stamp when it applies: the last step of every figure."""
    if title:
        fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    if random_weights:
        mark_random_weights(fig)
    return fig


def mark_random_weights(fig: Figure) -> None:
    """Stamp the figure so that a pipeline check can never be mistaken for a result."""
    fig.text(0.5, 0.5, RANDOM_WEIGHTS_MARK, ha="center", va="center", rotation=20, fontsize=22,
             color="red", alpha=0.35, weight="bold", zorder=10)  # fmt: skip


def save_figure(fig: Figure, path: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``; returns the written paths.

    Figures are derived from results and are regenerated on every run, so existing files are replaced.
    The figure's label (e.g. "grid 4x7: ..." for :func:`method_grid`) is written as the PNG's description.
    """
    stem = Path(path).with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = stem.with_suffix(f".{fmt}")
        metadata = {"Description": fig.get_label()} if fmt == "png" and fig.get_label() else None
        fig.savefig(target, dpi=dpi, bbox_inches="tight", metadata=metadata)
        written.append(target)
    return written
