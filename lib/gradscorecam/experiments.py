"""The paper's experiments as functions, so that the notebooks stay thin.

* :func:`method_figure`: Figures 2–4, one row per image, the input and each method's map.
* :func:`multi_object_figure`: Figure 5, images with several objects of the explained class, their boxes
  drawn, and how many of the objects each map reaches.
* :func:`object_localization` and :func:`object_scores_per_image`: Figure 5 as a number, the per-object
  localisation scores (:func:`gradscorecam.metrics.object_scores`) of every method on every image given.
* :func:`faithfulness_table`: Table 1 next to the paper's numbers.

Every function returns the table of what was computed, with how it was obtained (model, weights, layer,
images, device), so that a notebook can print it under the figure.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from .comparison import MethodComparison, compare_methods, row_titles
from .datasets import (
    BUILTIN_PHOTOS,
    ImageRecord,
    builtin_images,
    check_class_indices,
    imagenet_folder,
    labels_csv,
    load_batch,
    sample,
    two_cats_composite,
)
from .datasets.builtin import COMPOSITE_ID
from .errors import GradScoreCAMError
from .explainers import METHODS, describe_channel_budgets
from .metrics.localization import object_scores, objects_reached
from .models import ModelSpec, load_model
from .plotting import finish_figure, method_grid, to_display_image
from .torchutils import resolve_device
from .verdict import METRICS as VERDICT_METRICS

Box = tuple[int, int, int, int]


# ------------------------------------------------------------------------------------------ sources
def open_model(
    model: str, model_file: str | None = None, weights: str | None = "DEFAULT", device: str = "auto"
) -> ModelSpec:
    """The model of an experiment: ``model_file`` (a ``build_model()`` file) when given, else torchvision ``model``.

    A model file brings its own weights, so ``weights`` applies to torchvision networks only.
    """
    target = resolve_device(device)
    if model_file:
        return load_model(model_file, device=target)
    return load_model(model, weights=weights, device=target)


def open_image_source(source: str) -> list[ImageRecord]:
    """``"builtin"`` (bundled photographs), a labels CSV file, or an ImageNet validation folder."""
    if source == "builtin":
        return builtin_images()
    path = Path(source).expanduser()
    if path.suffix.lower() == ".csv":
        return labels_csv(path)
    return imagenet_folder(path)


def describe_source(source: str, records: Sequence[ImageRecord]) -> str:
    """How many images, from where (the built-in photographs or composite when a source fell back to them)."""
    builtin = {p.image_id for p in BUILTIN_PHOTOS} | {COMPOSITE_ID}
    if source == "builtin" or all(r.image_id in builtin for r in records):
        return f"{len(records)} built-in image(s) ({', '.join(r.image_id for r in records)})"
    return f"{len(records)} image(s) from {source}"


def figure_images(source: str, n: int, seed: int = 0) -> list[ImageRecord]:
    """The images of Figures 2–4, the same for every network as in the paper.

    The built-in photographs are taken in their fixed order (there are few); other sources are sampled
    reproducibly with ``seed``.
    """
    if source == "builtin":
        return builtin_images(include_composite=False)[:n]
    return sample(open_image_source(source), n, seed)


def multi_object_images(source: str, n: int | None, seed: int = 0, min_boxes: int = 2,
                        num_classes: int | None = None) -> list[ImageRecord]:  # fmt: skip
    """Figure 5's images: ``min_boxes`` or more ground-truth boxes of the image's class, ``n`` of them sampled
    with ``seed`` (None: all; samples are nested, so the first 3 are among the first 80).

    Without ImageNet (``"builtin"``), or when the source has no such image (a labels CSV without boxes), the
    bundled composite of two cats, whose boxes are known by construction; the latter with a warning that
    says so. The composite is labelled with ImageNet class 281 (tabby): for a model with ``num_classes`` <= 281
    outputs (a CIFAR-10 network) there is no image to show, and the result is empty, with a warning.
    """
    if source != "builtin":
        pool = [r for r in open_image_source(source) if len(r.boxes) >= min_boxes]
        if pool:
            return sample(pool, n, seed)
        warnings.warn(
            f"no image in {source} has {min_boxes} or more boxes of its class (Figure 5 needs boxes: an ImageNet "
            "folder with LOC_val_solution.csv or XML annotations, or a labels CSV with box columns); using the "
            "built-in two-cats composite instead.",
            stacklevel=2,
        )
    composite = two_cats_composite()
    if num_classes is not None and composite.class_index >= num_classes:
        warnings.warn(
            f"the built-in two-cats composite is labelled with ImageNet class {composite.class_index} (tabby), which a "
            f"model with {num_classes} classes does not have: no multi-object image for this model. Give an image "
            "source with boxes of the model's classes (a labels CSV with x0,y0,x1,y1 columns).",
            stacklevel=2,
        )
        return []
    return [composite]


# ------------------------------------------------------------------------------------------ figures
@dataclass
class FigureResult:
    """A figure, the comparison it shows, and a per-image table saying how it was obtained."""

    figure: Figure
    comparison: MethodComparison
    table: pd.DataFrame


def method_figure(
    spec: ModelSpec,
    records: Sequence[ImageRecord],
    methods: Sequence[str] = tuple(METHODS),
    *,
    title: str | None = None,
    boxes: bool = False,
    **explainer_options: Any,
) -> FigureResult:
    """Figures 2–4: the input and each method's map for ``records``, explaining each image's top class.

    Raises ClassIndexError (naming the label's file and line) if a record's label is not one of the model's classes.
    """
    check_class_indices(records, len(spec.categories))
    device = next(spec.model.parameters()).device
    images, mapped_boxes = load_batch(records, spec.transform)
    images = images.to(device)
    comparison = compare_methods(spec.model, spec.target_layer, images, None, methods, **explainer_options)
    display = [to_display_image(image, spec.mean, spec.std) for image in images]
    drawn = [list(b or ()) for b in mapped_boxes] if boxes else None
    figure = method_grid(
        display, comparison.maps, row_titles=row_titles(comparison, spec.categories), boxes=drawn,
        random_weights=spec.is_random, title=title,
    )  # fmt: skip
    return FigureResult(figure, comparison, _figure_table(spec, records, comparison, device))


def multi_object_figure(
    spec: ModelSpec,
    records: Sequence[ImageRecord],
    methods: Sequence[str] = tuple(METHODS),
    *,
    title: str | None = None,
    threshold: float = 0.5,
    tolerance: float | None = None,
    **explainer_options: Any,
) -> FigureResult:
    """Figure 5: maps for the labelled class of images with several objects, boxes drawn, objects reached.

    Beyond the paper: under each map, how many of the image's objects it reaches (see
    :func:`~gradscorecam.metrics.objects_reached`; ``tolerance`` None: 15 px at 224 x 224, scaled to the input).
    """
    check_class_indices(records, len(spec.categories))
    device = next(spec.model.parameters()).device
    images, mapped_boxes = load_batch(records, spec.transform)
    images = images.to(device)
    targets = [r.class_index for r in records]
    comparison = compare_methods(spec.model, spec.target_layer, images, targets, methods, **explainer_options)
    boxes = [list(b or ()) for b in mapped_boxes]
    captions, reached = {}, {}
    for method, maps in comparison.maps.items():
        if isinstance(maps, str):
            continue
        reached[method] = [objects_reached(m, b, threshold, tolerance) for m, b in zip(maps, boxes, strict=True)]
        captions[method] = [f"reaches {sum(r)}/{len(r)}" if r else "no boxes" for r in reached[method]]
    display = [to_display_image(image, spec.mean, spec.std) for image in images]
    figure = method_grid(
        display, comparison.maps, row_titles=row_titles(comparison, spec.categories), boxes=boxes,
        captions=captions, random_weights=spec.is_random, title=title,
    )  # fmt: skip
    table = _figure_table(spec, records, comparison, device)
    table["objects"] = [len(b) for b in boxes]
    for method, per_image in reached.items():
        table[f"reached: {method}"] = [sum(r) for r in per_image]
    return FigureResult(figure, comparison, table)


def object_localization(
    spec: ModelSpec,
    records: Sequence[ImageRecord],
    methods: Sequence[str] = tuple(METHODS),
    *,
    threshold: float = 0.5,
    progress: bool = True,
    min_boxes: int = 2,
    **explainer_options: Any,
) -> pd.DataFrame:
    """Figure 5 as a number: the per-object scores of each method's map for each image's labelled class.

    One row per (image, method, object): ``image_id``, ``method``, ``object`` (box number), ``box`` (in the
    model input's pixels), ``found`` and ``energy`` (:func:`gradscorecam.metrics.object_scores`, with
    ``threshold``), ``objects`` (the image's number of boxes), ``seconds`` (the method's time per image) and
    ``model``, ``weights``, ``target_layer``.
    Images are explained one at a time (memory does not grow with the number of images). A method not
    defined for the model (CAM without a GAP head) has no rows; ``attrs["undefined"]`` says why.
    Images left with fewer than ``min_boxes`` boxes once the transform has mapped them (a centre crop can cut
    an object off) are skipped and listed in ``attrs["skipped"]``: a single box would be a pointing-game hit,
    not the "every object" this score is for.
    Raises :class:`~gradscorecam.errors.GradScoreCAMError` when ``spec.transform`` is not a resize + centre crop
    (:mod:`gradscorecam.datasets.boxes`): the boxes cannot be placed on its input.
    """
    from tqdm.auto import tqdm

    check_class_indices(records, len(spec.categories))
    device = next(spec.model.parameters()).device
    # the configuration, as the runner's rows carry it, so that compare() and summarize() can check it
    where = {"model": spec.name, "weights": spec.weights, "target_layer": spec.target_layer}
    rows: list[dict[str, Any]] = []
    undefined: dict[str, str] = {}
    skipped: list[str] = []
    for record in tqdm(records, unit="img", desc="images", disable=not progress):
        images, mapped = load_batch([record], spec.transform)
        boxes = mapped[0]
        if boxes is None:  # load_batch's None: the transform's geometry is unknown (datasets.boxes)
            raise GradScoreCAMError(
                f"{record.image_id}: its {len(record.boxes)} boxes cannot be placed on the model's input, because "
                f"{spec.name}'s transform is not a resize + centre crop (the geometries gradscorecam.datasets.boxes "
                "knows). Per-object scores need one: give the model a transform such as torchvision's "
                "Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(...)])."
            )
        if len(boxes) < min_boxes:
            skipped.append(record.image_id)
            continue
        comparison = compare_methods(spec.model, spec.target_layer, images.to(device), [record.class_index], methods,
                                     **explainer_options)  # fmt: skip
        for method, maps in comparison.maps.items():
            if isinstance(maps, str):
                undefined[method] = " ".join(maps.split())
                continue
            scores = object_scores(maps[0], boxes, threshold)
            for number, (box, found, energy) in enumerate(zip(boxes, scores.found, scores.energy, strict=True)):
                rows.append({"image_id": record.image_id, "method": method, "object": number, "box": tuple(box),
                             "objects": len(boxes), "found": bool(found), "energy": float(energy),
                             "seconds": comparison.seconds[method], **where})  # fmt: skip
    table = pd.DataFrame(rows, columns=["image_id", "method", "object", "box", "objects", "found", "energy", "seconds",
                                        *where])  # fmt: skip
    table.attrs.update(undefined=undefined, skipped=skipped, threshold=threshold,
                       provenance=provenance(spec, device))  # fmt: skip
    return table


#: Figure 5's per-image scores for :func:`gradscorecam.compare` (``metrics=``): both higher is better. The same
#: two columns are in the runner's rows (images with several objects of the explained class).
OBJECT_METRICS: dict[str, tuple[str, str]] = {
    name: VERDICT_METRICS[name] for name in ("objects_found", "min_object_energy")
}


def object_scores_per_image(objects: pd.DataFrame) -> pd.DataFrame:
    """Per (image, method), from :func:`object_localization`'s rows: ``objects``, ``objects_found`` (share of
    the image's objects found, in [0, 1]), ``min_object_energy`` (the worst-served object's energy ratio) and
    ``seconds`` (and the configuration columns): the per-image values whose means, intervals and paired
    comparisons the notebook reports."""
    keys = ["image_id", "method", *[c for c in ("model", "weights", "target_layer") if c in objects.columns]]
    grouped = objects.groupby(keys, sort=False)
    table = grouped.agg(objects=("objects", "first"), objects_found=("found", "mean"),
                        min_object_energy=("energy", "min"), seconds=("seconds", "first")).reset_index()  # fmt: skip
    table["objects_found"] = table["objects_found"].astype(float)
    table.attrs.update(objects.attrs)
    return table


def object_summary(per_image: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per method, the means of :func:`object_scores_per_image`'s scores over the images with their 95 %
    percentile-bootstrap intervals (:func:`gradscorecam.summary.summarize`, 2000 resamples, ``seed``): objects
    found in percent, the worst-served object's energy ratio (1 = a uniform map), images and objects."""
    from .summary import summarize

    metrics = tuple((name, name) for name in OBJECT_METRICS)
    summary = summarize(per_image, seed=seed, metrics=metrics)
    table = pd.DataFrame(index=summary.index)
    found = summary["objects_found"] * 100
    table["objects found %"] = found.round(1)
    table["objects found % 95% CI"] = [
        f"[{lo * 100:.1f}, {hi * 100:.1f}]"
        for lo, hi in zip(summary["objects_found_low"], summary["objects_found_high"], strict=True)
    ]
    table["min object energy"] = summary["min_object_energy"].round(2)
    table["min object energy 95% CI"] = [
        f"[{lo:.2f}, {hi:.2f}]"
        for lo, hi in zip(summary["min_object_energy_low"], summary["min_object_energy_high"], strict=True)
    ]
    table["images"] = summary["objects_found_n"].astype(int)
    objects = per_image.groupby("method")["objects"].sum()
    table["objects"] = [int(objects.get(m, 0)) for m in table.index]
    table["s/image"] = summary["seconds_per_image"].round(3)
    return table


def _figure_table(spec: ModelSpec, records: Sequence[ImageRecord], comparison: MethodComparison,
                  device: torch.device) -> pd.DataFrame:  # fmt: skip
    rows = []
    for record, target, probability in zip(records, comparison.targets, comparison.probabilities, strict=True):
        rows.append({
            "image": record.image_id,
            "label": spec.categories[record.class_index] if 0 <= record.class_index < len(spec.categories) else "?",
            "explained class": spec.categories[int(target)],
            "probability": round(float(probability), 4),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    for method, seconds in comparison.seconds.items():
        table[f"s/img {method}"] = round(seconds, 3)
    table.attrs["provenance"] = provenance(spec, device)
    return table


def provenance(spec: ModelSpec, device: torch.device | str, **extra: Any) -> str:
    """One line saying how the numbers and maps were obtained."""
    parts = [f"model {spec.name}", f"weights {spec.weights}", f"target layer {spec.target_layer}", f"device {device}"]
    parts += [f"{key} {value}" for key, value in extra.items()]
    text = "; ".join(parts)
    return f"RANDOM WEIGHTS (pipeline check only): {text}" if spec.is_random else text


# ------------------------------------------------------------------------------------------ Table 1
def table_images(source: str, n: int, seed: int = 0) -> list[ImageRecord]:
    """Table 1's images: ``n`` sampled with ``seed`` (all built-in photographs, which are fewer); the same
    rule as :func:`figure_images`."""
    return figure_images(source, n, seed)


def load_paper_table(path: str | Path) -> pd.DataFrame:
    """The paper's Table 1 (``data/paper_table1.csv``), indexed by method."""
    return pd.read_csv(path).set_index("method")


#: How the paper's Table 1 numbers are labelled: they were measured on VGG16 (``data/README.md``), whatever
#: network the columns beside them show.
PAPER_LABEL = "(paper, VGG16)"


def faithfulness_table(summary: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Average Drop / Increase per method with their 95 % CIs, seconds per image, and the paper's numbers
    (columns ``... (paper, VGG16)``: the paper's Table 1 copies VGG16 numbers). Deletion/Insertion AUC and,
    for images with boxes, the pointing game's hit rate and the energy-based pointing game (with ``N boxes``,
    the images they count) where the results have them."""
    table = pd.DataFrame(index=summary.index)
    for name, label in (("average_drop", "Average Drop %"), ("average_increase", "Average Increase %")):
        table[label] = summary[name].round(1)
        table[f"{label} 95% CI"] = [
            f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(summary[f"{name}_low"], summary[f"{name}_high"], strict=True)
        ]
        if paper is not None:
            table[f"{label} {PAPER_LABEL}"] = [paper[name].get(m, float("nan")) for m in summary.index]
    for name, label in (("deletion_auc", "Deletion AUC"), ("insertion_auc", "Insertion AUC")):
        if name in summary:
            table[label] = summary[name].round(3)
    pointing = [(n, label) for n, label in (("pointing_game", "Pointing game"), ("energy_pointing", "Energy pointing"))
                if n in summary]  # fmt: skip
    for name, label in pointing:
        table[label] = summary[name].round(3)
    if pointing:
        table["N boxes"] = summary[f"{pointing[0][0]}_n"].fillna(0).astype(int)
    table["N"] = summary["average_drop_n"].astype(int)
    table["s/image"] = summary["seconds_per_image"].round(2)
    undefined = (table["N"] == 0) & (summary["notes"] > 0)
    table["note"] = np.where(undefined, "not defined for this model (see the results' note column)", "")
    return table


def recorded_budgets(results: pd.DataFrame, methods: Sequence[str] = ("Score-CAM", "Grad++ScoreCAM")) -> dict[str, Any]:
    """The ``max_channels`` each score-based method in ``results`` ran with, as its rows record it.

    Every row's ``explainer_options`` is the JSON of its own explainer's effective ``options()`` (defaults
    included, see :func:`gradscorecam.evaluate`), so this reads what ran, not what a default says today. Rows
    without a recorded budget (a file written before options were recorded) raise ValueError: the caption
    would otherwise have to guess. Describe the result with
    :func:`gradscorecam.explainers.describe_channel_budgets`.
    """
    import json

    budgets: dict[str, Any] = {}
    for method in methods:
        rows = results.loc[results["method"] == method, "explainer_options"] if "explainer_options" in results else []
        if not len(rows):
            continue
        recorded = {json.dumps(json.loads(str(text)).get("max_channels")) for text in rows}
        if len(recorded) != 1 or recorded == {"null"}:
            raise ValueError(f"the results do not record one channel budget for {method} (found {sorted(recorded)}); "
                             "they were written before explainer options were recorded, or mix budgets")  # fmt: skip
        budgets[method] = json.loads(recorded.pop())
    return budgets


def table1_caption(
    spec: ModelSpec,
    summary: pd.DataFrame,
    source: str,
    records: Sequence[ImageRecord],
    *,
    seed: int,
    score: str,
    masking: str,
    budgets: Mapping[str, Any] | None = None,
    paper: bool = True,
) -> str:
    """Table 1's caption: model, weights, layer, the images as they are (:func:`describe_source`, never "ImageNet"
    for another source), N, seed, score and masking, what Deletion/Insertion score, the channel budgets of the
    score-based methods (:func:`recorded_budgets`), and that the paper's columns are VGG16 numbers."""
    n = int(summary["average_drop_n"].max()) if "average_drop_n" in summary else len(records)
    parts = [
        f"Table 1 reproduced: {spec.name} ({spec.weights}), layer {spec.target_layer}",
        f"{describe_source(source, records)}, N = {n} with values",
        f"seed {seed}",
        f"Average Drop/Increase on {'logits' if score == 'logit' else 'softmax probabilities'} of the explained class"
        + ("; Deletion/Insertion AUC always on softmax probabilities" if score == "logit" else ""),
        f"masking in the {masking} input space",
    ]
    if budgets:
        parts.append("channels scored: " + describe_channel_budgets(budgets))
    if paper:
        vgg = spec.name.lower().startswith("vgg16")
        parts.append(f"columns {PAPER_LABEL}: the paper's Table 1, measured on VGG16"
                     + ("" if vgg else f", another network than {spec.name}: compare orders, not values"))  # fmt: skip
    caption = "; ".join(parts)
    return f"RANDOM WEIGHTS (pipeline check only): {caption}" if spec.is_random else caption


def faithfulness_chart(summary: pd.DataFrame, paper: pd.DataFrame | None = None, title: str | None = None,
                       random_weights: bool = False) -> Figure:  # fmt: skip
    """Bars of Average Drop (lower is better) and Average Increase (higher is better): this run with its
    95 % bootstrap intervals, next to the paper's numbers. Methods without a value (CAM on VGG16) have no bar."""
    import textwrap

    import seaborn as sns
    from matplotlib import pyplot as plt

    ours_colour, paper_colour = sns.color_palette("colorblind", 2)
    methods = list(summary.index)
    x = np.arange(len(methods))
    width = 0.38 if paper is not None else 0.6
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    panels = (("average_drop", "Average Drop % (lower is better)"),
              ("average_increase", "Average Increase % (higher is better)"))  # fmt: skip
    for ax, (name, label) in zip(axes, panels, strict=True):
        values = summary[name].to_numpy(dtype=float)
        errors = np.vstack([values - summary[f"{name}_low"], summary[f"{name}_high"] - values])
        offset = -width / 2 if paper is not None else 0.0
        ax.bar(x + offset, values, width, color=ours_colour, label="this run (95 % CI)")
        ax.errorbar(x + offset, values, yerr=errors, fmt="none", ecolor="black", capsize=3)
        if paper is not None:
            reported = [paper[name].get(m, np.nan) for m in methods]
            ax.bar(x + width / 2, reported, width, color=paper_colour, label="paper, Table 1 (VGG16)")
        ax.set_xticks(x, methods, rotation=30, ha="right")
        ax.set_title(label, fontsize=10)
        ax.set_ylabel("%")
        ax.legend(fontsize=8)
        sns.despine(ax=ax)
    return finish_figure(fig, "\n".join(textwrap.wrap(title, 130)) if title else None, random_weights, fontsize=9)


def export_table(table: pd.DataFrame, path: str | Path, caption: str = "") -> list[Path]:
    """Write ``table`` as CSV, Markdown and LaTeX next to each other (``path`` without suffix); returns the paths."""
    stem = Path(path).with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".tex")]
    table.to_csv(paths[0])
    paths[1].write_text((f"{caption}\n\n" if caption else "") + table.to_markdown() + "\n")
    paths[2].write_text(table.to_latex(caption=caption or None, float_format="%.2f", na_rep="--"))
    return paths
