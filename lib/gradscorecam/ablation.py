"""Which reading of Grad++ScoreCAM explains best? The ablation behind ``notebooks/06_ablation.ipynb``.

The paper leaves four choices open (see :mod:`gradscorecam.explainers.gradpp_scorecam`): ``mask_source``,
``perturb``, ``baseline`` and ``combine``, plus how many channels are scored (``max_channels``). This module
evaluates every combination of the four at one channel budget, sweeps the budget for chosen readings, and
compares with Grad-CAM++ and Score-CAM on the same images, all through the resumable runner
(:func:`gradscorecam.evaluate`, one results file per configuration, so a long run can be stopped and resumed).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .datasets import ImageRecord, load_batch
from .models import ModelSpec
from .plotting import finish_figure
from .results import rows_for
from .runner import evaluate
from .summary import summarize
from .verdict import METRICS, decide, paired_comparison, verdict_text

#: The open choices of the paper and their values, the first being the library's default.
CHOICES: dict[str, tuple[Any, ...]] = {
    "mask_source": ("activation", "gradient"),
    "perturb": ("input", "feature"),
    "baseline": ("zeros", None),
    "combine": ("score", "score_x_grad"),
}
METHOD = "Grad++ScoreCAM"
#: Per-image metrics the table reports, as (summary column, better when higher).
QUALITY = {"average_drop": False, "average_increase": True, "deletion_auc": False, "insertion_auc": True}
# A layer with spatial structure after it, per model family (at layers followed directly by global average
# pooling and a linear layer, mask_source makes no difference). ResNets (ImageNet's layer1-4, CIFAR's
# layer1-3) take the stage before their usual layer.
_INNER_LAYERS = {"alexnet": "features.9", "vgg16": "features.22", "mobilenet_v2": "blocks.13"}


def readings() -> list[dict[str, Any]]:
    """All 16 combinations of :data:`CHOICES`, the library's default first."""
    return [dict(zip(CHOICES, values, strict=True)) for values in itertools.product(*CHOICES.values())]


def reading_label(reading: Mapping[str, Any]) -> str:
    """Short label, e.g. ``activation/input/zeros/score``."""
    return "/".join(str(reading[key]) for key in CHOICES)


@dataclass(frozen=True)
class Config:
    """One Grad++ScoreCAM configuration: a reading and a channel budget (None: every channel)."""

    reading: Mapping[str, Any] = field(hash=False)
    max_channels: int | None = None

    @property
    def label(self) -> str:
        return f"{reading_label(self.reading)} @ {self.max_channels or 'all'}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", self.label).strip("-")

    def options(self) -> dict[str, Any]:
        # None here means every channel, which the explainers spell "all" (their None means "the default, 64").
        return {**self.reading, "max_channels": "all" if self.max_channels is None else self.max_channels}


def default_layers(spec: ModelSpec) -> list[str]:
    """The model's usual layer and, where one is known for its family, an inner layer (ResNets: the stage
    before the usual one, ``layer3`` for ImageNet's ``layer4``, ``layer2`` for a CIFAR ResNet's ``layer3``)."""
    layers = [spec.target_layer]
    modules = dict(spec.model.named_modules())
    inner = dict(_INNER_LAYERS)
    stage = re.fullmatch(r"layer(\d+)", spec.target_layer)
    if stage and int(stage.group(1)) > 1:
        inner["resnet"] = f"layer{int(stage.group(1)) - 1}"  # layer4 -> layer3 (ImageNet), layer3 -> layer2 (CIFAR)
    for prefix, layer in inner.items():
        if spec.name.lower().startswith(prefix) and layer in modules and layer not in layers:
            layers.append(layer)
    return layers


def ablation_configs(
    budgets: Sequence[int | None], reading_budget: int | None, sweep: Sequence[Mapping[str, Any]] | None = None
) -> list[Config]:
    """Every reading at ``reading_budget``, and the budgets in ``budgets`` for the readings in ``sweep``
    (default: the library's default reading). Duplicates are removed, order kept."""
    configs = [Config(r, reading_budget) for r in readings()]
    for reading in sweep if sweep is not None else readings()[:1]:
        configs += [Config(dict(reading), budget) for budget in budgets]
    return list(dict.fromkeys(configs))  # Config equality: same reading and budget


def run_ablation(
    spec: ModelSpec,
    records: Sequence[ImageRecord],
    configs: Sequence[Config],
    out_dir: str | Path,
    *,
    layer: str,
    baselines: Sequence[str] = ("Grad-CAM++", "Score-CAM"),
    baseline_options: Mapping[str, Mapping[str, Any]] | None = None,
    **evaluate_options: Any,
) -> pd.DataFrame:
    """Evaluate each configuration (and the baselines) on ``records`` at ``layer``; one summary row each.

    ``evaluate_options`` go to :func:`gradscorecam.evaluate` (device, batch_size, deletion_steps, seed,
    score, masking ...). Results files go to ``out_dir/<layer>/``; rerunning resumes them.

    Each Grad++ScoreCAM row also carries the paired comparisons behind :func:`claims`: for each claim of
    :data:`CLAIMS` whose baseline was run, ``"<claim> difference"`` (mean over images of Grad++ScoreCAM −
    baseline), ``"<claim> low"``/``"<claim> high"`` (95 % paired bootstrap interval), ``"<claim> p"`` (Wilcoxon
    signed-rank, or exact McNemar for Average Increase) and ``"<claim> n"`` (paired images), computed by
    :func:`gradscorecam.verdict.paired_comparison` from the per-image rows of the two results files (same
    images, same settings; only the explainer options differ, which is the point).
    """
    folder = Path(out_dir) / re.sub(r"[^A-Za-z0-9]+", "_", layer)
    # probed at the size of the images evaluated (224 x 224 for ImageNet networks, 32 x 32 for CIFAR ones)
    shortcut = bool(records) and followed_by_gap_linear(spec, layer, input_size(spec, records))
    rows: list[dict[str, Any]] = []
    done: dict[str, dict[str, Any]] = {}
    per_image: dict[str, pd.DataFrame] = {}  # the per-image rows of each configuration, twins sharing one
    for config in configs:
        twin = _mask_source_twin(config) if shortcut else None
        if twin is not None and twin.label in done:
            # Right before global average pooling + linear, G^k is constant over space: with a channel budget
            # (channels with w_k > 0 only) both mask sources give the same masks, hence the same numbers.
            rows.append(
                {
                    **done[twin.label],
                    "config": config.label,
                    **{k: config.reading[k] for k in CHOICES},
                    "note": f"identical by construction to {twin.label} (layer followed by GAP + linear)",
                }
            )
            per_image[config.label] = per_image[twin.label]
            continue
        results = evaluate(
            spec, records, [METHOD], folder / f"{config.slug}.csv", target_layer=layer,
            explainer_options={METHOD: config.options()}, **evaluate_options,
        )  # fmt: skip
        row = _summary_row(results, records, METHOD, layer, config.label, config.reading, config.max_channels)
        done[config.label] = row
        per_image[config.label] = rows_for(results[results["method"] == METHOD], records)
        rows.append(row)
    if baselines:
        options = {m: dict(o) for m, o in (baseline_options or {}).items() if m in baselines}
        results = evaluate(
            spec, records, list(baselines), folder / "baselines.csv", target_layer=layer, explainer_options=options,
            **evaluate_options,
        )  # fmt: skip
        for method in baselines:
            budget = options.get(method, {}).get("max_channels")
            rows.append(_summary_row(results, records, method, layer, method, {}, budget))
        reference = {m: rows_for(results[results["method"] == m], records) for m in baselines}
        for row in rows:
            if row["method"] == METHOD:
                row.update(_paired_claims(per_image[row["config"]], reference))
    return pd.DataFrame(rows)


def input_size(spec: ModelSpec, records: Sequence[ImageRecord]) -> tuple[int, int]:
    """(H, W) of the first record after the model's transform: the size the model is evaluated at."""
    images, _ = load_batch(list(records[:1]), spec.transform)
    return int(images.shape[-2]), int(images.shape[-1])


def followed_by_gap_linear(spec: ModelSpec, layer: str, size: int | tuple[int, int]) -> bool:
    """Whether the model's logits are a linear layer of the global average pool of ``layer``'s output (CAM's
    condition), checked on one random image of ``size`` (an int for a square, or (H, W): the size the model
    is evaluated at, see :func:`input_size`)."""
    import torch

    from .errors import UnsupportedModelError
    from .explainers import CAM

    height, width = (size, size) if isinstance(size, int) else size
    device = next(spec.model.parameters()).device
    channels = next((m.in_channels for m in spec.model.modules() if isinstance(m, torch.nn.Conv2d)), len(spec.mean))
    image = torch.randn(1, channels, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        CAM(spec.model, layer).explain(image)
    except UnsupportedModelError:
        return False
    return True


def _mask_source_twin(config: Config) -> Config | None:
    """The configuration with the other mask source, which gives the same numbers right before GAP + linear.

    Only with a channel budget: then both score the channels with w_k > 0, whose gradient maps are A^k times
    a positive constant. Without one, ``"activation"`` also scores the channels with w_k = 0.
    """
    if config.max_channels is None:
        return None
    other = "gradient" if config.reading["mask_source"] == "activation" else "activation"
    return Config({**config.reading, "mask_source": other}, config.max_channels)


def _summary_row(results: pd.DataFrame, records: Sequence[ImageRecord], method: str, layer: str, label: str,
                 reading: Mapping[str, Any], budget: int | None) -> dict[str, Any]:  # fmt: skip
    summary = summarize(rows_for(results[results["method"] == method], records)).loc[method]
    row: dict[str, Any] = {"layer": layer, "config": label, "method": method,
                           **{key: reading.get(key, "") for key in CHOICES}, "max_channels": budget or "all"}  # fmt: skip
    for name in (*QUALITY, "energy_pointing"):
        if name in summary:
            row.update(
                {name: summary[name], f"{name}_low": summary[f"{name}_low"], f"{name}_high": summary[f"{name}_high"]}
            )
    row["n_images"] = int(summary["average_drop_n"])
    row["degenerate_maps"] = int(summary["degenerate_maps"])  # all-zero maps: no deletion/insertion/pointing value
    row["seconds_per_image"] = summary["seconds_per_image"]
    return row


def pareto_front(
    table: pd.DataFrame, quality: str, higher_is_better: bool, cost: str = "seconds_per_image"
) -> pd.Series:
    """True for the rows no other row beats on both ``quality`` and ``cost`` (lower cost is better)."""
    q = table[quality].to_numpy(dtype=float) * (1 if higher_is_better else -1)
    c = table[cost].to_numpy(dtype=float)
    front = []
    for i in range(len(table)):
        dominated = np.any((q >= q[i]) & (c <= c[i]) & ((q > q[i]) | (c < c[i])))
        front.append(bool(not dominated and np.isfinite(q[i]) and np.isfinite(c[i])))
    return pd.Series(front, index=table.index)


def rank_configs(table: pd.DataFrame, max_seconds: float | None = None) -> pd.DataFrame:
    """Grad++ScoreCAM configurations ordered by their mean rank over the four faithfulness metrics.

    Each metric ranks the configurations (1 = best: low Average Drop and Deletion AUC, high Average
    Increase and Insertion AUC); ``mean_rank`` averages the four ranks. ``max_seconds`` keeps only
    configurations at most that slow per image (the "sensible speed" of the choice).
    """
    ours = table[table["method"] == METHOD].copy()
    if max_seconds is not None:
        ours = ours[ours["seconds_per_image"] <= max_seconds]
    ranks = [ours[name].rank(ascending=not higher) for name, higher in QUALITY.items() if name in ours]
    ours["mean_rank"] = pd.concat(ranks, axis=1).mean(axis=1)
    return ours.sort_values(["mean_rank", "seconds_per_image"])


def indistinguishable(table: pd.DataFrame, label: str, other: str) -> bool:
    """Whether configurations ``label`` and ``other`` (``config`` column) cannot be told apart: on every
    metric of :data:`QUALITY`, each one's mean lies within the other's 95 % bootstrap interval."""
    rows = table.set_index("config")
    a, b = rows.loc[label], rows.loc[other]
    for name in QUALITY:
        for x, y in ((a, b), (b, a)):
            if not y[f"{name}_low"] <= x[name] <= y[f"{name}_high"]:
                return False
    return True


#: The paper's claims as (column, baseline, per-image results column): lower Average Drop and higher Average
#: Increase than Grad-CAM++ and Score-CAM, and less time than Score-CAM.
CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("AD < Grad-CAM++", "Grad-CAM++", "drop"),
    ("AI > Grad-CAM++", "Grad-CAM++", "increase"),
    ("AD < Score-CAM", "Score-CAM", "drop"),
    ("AI > Score-CAM", "Score-CAM", "increase"),
    ("faster than Score-CAM", "Score-CAM", "seconds"),
)


def _paired_claims(ours: pd.DataFrame, reference: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """The paired numbers of :data:`CLAIMS` for one configuration's per-image rows (see :func:`run_ablation`)."""
    entry: dict[str, Any] = {}
    for claim, baseline, column in CLAIMS:
        if baseline not in reference:
            continue
        row = paired_comparison(ours, reference[baseline], {column: METRICS[column]}).iloc[0]
        entry.update({f"{claim} difference": row["mean_difference"], f"{claim} low": row["low"],
                      f"{claim} high": row["high"], f"{claim} p": row["p_value"], f"{claim} n": row["n"]})  # fmt: skip
    return entry


def claims(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims (:data:`CLAIMS`) per Grad++ScoreCAM configuration and layer, from the paired
    comparisons that :func:`run_ablation` stores: "holds" when the 95 % paired bootstrap interval of the mean
    difference (Grad++ScoreCAM − baseline, over the same images) lies on the claimed side of 0 and the paired
    test agrees (p < 0.05), "fails" when both say the other side, "cannot tell at N = n" otherwise (the rule
    of :func:`gradscorecam.verdict.decide`, as :func:`gradscorecam.claim_verdicts`).
    Claims whose baseline was not run are left out."""
    rows = []
    for _, row in table[table["method"] == METHOD].iterrows():
        entry = {"layer": row["layer"], "config": row["config"]}
        for claim, _, column in CLAIMS:
            if f"{claim} low" not in row.index or pd.isna(row[f"{claim} n"]):
                continue
            better = decide(row[f"{claim} low"], row[f"{claim} high"], row[f"{claim} p"], METRICS[column][0])
            entry[claim] = verdict_text(better, int(row[f"{claim} n"]))
        rows.append(entry)
    return pd.DataFrame(rows)


def pareto_plot(table: pd.DataFrame, title: str | None = None, random_weights: bool = False) -> Figure:
    """Faithfulness against seconds per image, one panel per metric and a row per layer; the Pareto front joined."""
    from matplotlib import pyplot as plt

    layers = list(dict.fromkeys(table["layer"]))
    fig, axes = plt.subplots(len(layers), len(QUALITY), figsize=(4.2 * len(QUALITY), 3.6 * len(layers)), squeeze=False)
    for r, layer in enumerate(layers):
        part = table[table["layer"] == layer].reset_index(drop=True)
        ours = part["method"] == METHOD
        for c, (name, higher) in enumerate(QUALITY.items()):
            ax = axes[r, c]
            ax.scatter(part.loc[ours, "seconds_per_image"], part.loc[ours, name], s=18, color="tab:blue",
                       label="Grad++ScoreCAM configurations")  # fmt: skip
            for _, base in part[~ours].iterrows():
                ax.scatter(base["seconds_per_image"], base[name], marker="*", s=140, label=base["method"],
                           color=_BASELINE_COLOURS.get(base["method"], "tab:gray"), zorder=3)  # fmt: skip
            front = part[ours & pareto_front(part.where(ours), name, higher)].sort_values("seconds_per_image")
            ax.plot(front["seconds_per_image"], front[name], color="tab:blue", lw=1)
            # Twins (e.g. both mask sources before GAP + linear) sit on one point: one label, with a count.
            for (x, y), same in front.groupby(["seconds_per_image", name], sort=False):
                more = f" (+{len(same) - 1} identical)" if len(same) > 1 else ""
                ax.annotate(
                    same["config"].iloc[0] + more, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6
                )
            _log_axis(ax.xaxis)
            ax.set_xlabel("seconds per image (log)")
            ax.set_title(
                f"{name.replace('_', ' ')} ({'higher' if higher else 'lower'} is better)\nlayer {layer}", fontsize=9
            )
        axes[r, 0].legend(fontsize=7)
    return finish_figure(fig, title, random_weights)


_BASELINE_COLOURS = {"Grad-CAM++": "tab:green", "Score-CAM": "tab:red"}


def _log_axis(axis: Any, base: float = 10) -> None:
    """A log axis labelled with plain numbers (no crowded minor-tick labels)."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    axis.axes.set_xscale("log", base=base)
    axis.set_major_locator(LogLocator(base=base))
    formatter = ScalarFormatter()
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(NullFormatter())


def budget_plot(table: pd.DataFrame, title: str | None = None, random_weights: bool = False) -> Figure:
    """Faithfulness and time against the channel budget for the swept readings, baselines as lines."""
    from matplotlib import pyplot as plt

    layers = list(dict.fromkeys(table["layer"]))
    panels = (*QUALITY, "seconds_per_image")
    fig, axes = plt.subplots(len(layers), len(panels), figsize=(3.6 * len(panels), 3.4 * len(layers)), squeeze=False)
    for r, layer in enumerate(layers):
        part = table[table["layer"] == layer]
        ours = part[part["method"] == METHOD].copy()
        ours["budget"] = pd.to_numeric(ours["max_channels"], errors="coerce")  # "all" becomes NaN
        full = ours["budget"].isna()
        top = ours["budget"].max() * 2 if ours["budget"].notna().any() else 1
        ours.loc[full, "budget"] = top  # "all" drawn right of the largest budget
        for reading, group in ours.groupby(ours["config"].str.split(" @ ").str[0]):
            if len(group) < 2:
                continue
            group = group.sort_values("budget")
            for c, name in enumerate(panels):
                axes[r, c].plot(group["budget"], group[name], marker="o", label=reading)
        for c, name in enumerate(panels):
            ax = axes[r, c]
            for _, base in part[part["method"] != METHOD].iterrows():
                ax.axhline(base[name], ls="--", lw=1, label=base["method"],
                           color=_BASELINE_COLOURS.get(base["method"], "tab:gray"))  # fmt: skip
            _log_axis(ax.xaxis, base=2)
            ax.set_xlabel("channels scored (rightmost: all)")
            ax.set_title(f"{name.replace('_', ' ')}\nlayer {layer}", fontsize=9)
        axes[r, 0].legend(fontsize=6)
    return finish_figure(fig, title, random_weights)
