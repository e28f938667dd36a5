"""Drawing the explorer's two pictures from finished results: the maps side by side, and the teaching view.

Figures are made with :class:`matplotlib.figure.Figure` directly, never through pyplot: the explorer draws
from widget callbacks (and a background thread), where pyplot's global figure list would leak figures
and the notebook's inline backend would show them a second time under the next cell.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter
from torch import Tensor

from ..plotting import mark_random_weights, overlay, to_display_image
from .compute import TeachingView


@dataclass(frozen=True)
class Cell:
    """One panel next to the input: a map (overlaid on the image) or, when there is none, a text saying why."""

    title: str
    saliency: Tensor | None = None
    text: str | None = None
    caption: str = ""


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for ``widgets.Image``)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def maps_figure(
    image: np.ndarray,
    cells: Sequence[Cell],
    *,
    opacity: float,
    input_caption: str = "",
    random_weights: bool = False,
    cell_size: float = 2.6,
) -> Figure:
    """The input, then one panel per method with its map at ``opacity``, and a shared colour bar."""
    columns = 1 + max(len(cells), 1)
    fig = Figure(figsize=(cell_size * columns + 0.7, cell_size + 0.9))
    axes = fig.subplots(1, columns, squeeze=False)[0]
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=10)
    axes[0].set_xlabel(input_caption, fontsize=8)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    artist = None
    for ax, cell in zip(axes[1:], cells, strict=False):  # no cells: one blank panel, left empty
        if cell.saliency is not None:
            artist = overlay(ax, image, cell.saliency, alpha=opacity)
        else:
            ax.imshow(np.full_like(image, 0.93))
            ax.text(0.5, 0.5, _wrap(cell.text or "", 28), ha="center", va="center", fontsize=7, transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(cell.title, fontsize=10)
        ax.set_xlabel(cell.caption, fontsize=8)
    for ax in axes[1 + len(cells) :]:
        ax.set_axis_off()
    fig.subplots_adjust(left=0.02, right=0.92, top=0.9, bottom=0.14, wspace=0.06)
    if artist is not None:
        cax = fig.add_axes((0.935, 0.2, 0.012, 0.68))
        fig.colorbar(artist, cax=cax).ax.tick_params(labelsize=7)
    if random_weights:
        mark_random_weights(fig)
    return fig


def teaching_figure(
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    views: Mapping[str, TeachingView],
    cell_size: float = 1.55,
) -> Figure:
    """One row per method: its best channels and, last, every channel's value sorted (the best highlighted).

    Score-based rows show the masked image the network scored (``X ⊙ H^k``, in the model's input space:
    masked pixels become the normalisation mean), titled with the channel and its score. Weight rows
    show the channel's activation map on the image, titled with its weight.
    """
    n = max((len(v.channels) for v in views.values()), default=0) or 1
    rows = max(len(views), 1)
    fig = Figure(figsize=(cell_size * (n + 2.5), (cell_size + 0.55) * rows))
    grid = fig.add_gridspec(rows, n + 1, width_ratios=[1] * n + [2.5])
    image = images[0].detach().cpu().float()
    display = to_display_image(image, mean, std)
    for row, (name, view) in enumerate(views.items()):
        for col, (channel, value) in enumerate(zip(view.channels, view.values, strict=True)):
            ax = fig.add_subplot(grid[row, col])
            mask = view.masks[col]
            if view.kind == "scores":
                ax.imshow(to_display_image(image * mask.to(image.dtype), mean, std))
                label = "s" if view.value_name == "score" else "α"
            else:
                overlay(ax, display, mask, alpha=0.55)
                label = "w"
            ax.set_title(f"ch {channel}\n{label} = {value:.3g}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
        bars = fig.add_subplot(grid[row, n])
        _value_plot(bars, view)
    fig.subplots_adjust(left=0.04, right=0.95, top=0.9, bottom=0.08, wspace=0.12, hspace=0.55)
    return fig


def _value_plot(ax: Axes, view: TeachingView) -> None:
    """Every channel's score or weight, sorted, the shown channels in red: how few channels carry the map."""
    values = view.all_values
    if view.scored is not None:
        order = [i for i in torch.argsort(values, descending=True).tolist() if bool(view.scored[i])]
    else:
        order = torch.argsort(values, descending=True).tolist()
    ranked = values[order].numpy() if order else np.zeros(0)
    shown = set(view.channels)
    colours = ["tab:red" if i in shown else "0.6" for i in order]
    ax.bar(np.arange(len(ranked)), ranked, width=1.0, color=colours)
    ax.axhline(0, color="0.3", linewidth=0.5)
    total = len(values)
    what = f"{len(order)} of {total} channels scored" if view.scored is not None else f"all {total} channels"
    ax.set_title(f"{view.value_name} per channel, sorted ({what})", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.yaxis.tick_right()
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))  # Grad-CAM weights are ~1e-3: "0.00" says nothing
    ax.set_xticks([])


def _wrap(text: str, width: int) -> str:
    """Break ``text`` into lines of about ``width`` characters (matplotlib's own wrapping ignores small axes)."""
    lines = [
        line
        for paragraph in text.split("\n")
        for line in textwrap.wrap(paragraph, width, break_long_words=False, break_on_hyphens=False) or [""]
    ]
    return "\n".join(lines[:14] + (["…"] if len(lines) > 14 else []))
