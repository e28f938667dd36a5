"""The results store: one CSV (or Parquet) file of rows per evaluation configuration, and reading it back.

:class:`ResultsStore` checks a file's configuration against the one asked for, lists the (image, method) pairs
already done, and appends rows durably (a Parquet file is journaled to ``<out>.journal.csv`` while running);
:func:`read_results`, :func:`merge_results`, :func:`check_single_config` and :func:`rows_for` read results
back. The evaluation loop that writes the rows is :mod:`gradscorecam.runner`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .datasets.records import ImageRecord
from .errors import ResultsMismatchError

#: The keys that define an evaluation; rows of different configurations never share a file.
CONFIG_KEYS = (
    "model",
    "weights",
    "target_layer",
    "target_class",
    "score",
    "masking",
    "top_percent",
    "seed",
    "deletion_steps",
    "explainer_options",
    "library_version",
)
#: Recorded with every row but allowed to differ between the parts of one run (a resumed run may move).
ENVIRONMENT_KEYS = ("torch_version", "device")
RESULT_COLUMNS = (
    "image_id",
    "label",
    "class_index",
    "predicted",
    "method",
    "Y",
    "O",
    "drop",
    "increase",
    "deletion_auc",
    "insertion_auc",
    "pointing_hit",
    "energy_pointing",
    "seconds",
    "metric_seconds",
    "note",
)
COLUMNS = RESULT_COLUMNS + CONFIG_KEYS + ENVIRONMENT_KEYS


def merge_results(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate results files (e.g. the shards of one run); refuses mixed configurations and duplicate rows."""
    frames = [read_results(p) for p in paths]
    if not frames:
        raise ValueError("no results files given")
    merged = pd.concat(frames, ignore_index=True)
    check_single_config(merged, what=", ".join(map(str, paths)))
    duplicated = merged.duplicated(["image_id", "method"])
    if duplicated.any():
        first = merged.loc[duplicated, ["image_id", "method"]].iloc[0].tolist()
        raise ResultsMismatchError(f"the files share (image, method) rows, e.g. {first}: were the shards disjoint?")
    return merged


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a results file (CSV or Parquet, plus a Parquet run's unfinished journal) with the runner's dtypes."""
    path = Path(path)
    frames = []
    if path.suffix == ".parquet":
        if path.is_file():
            frames.append(pd.read_parquet(path))
        journal = _journal_path(path)
        if journal.is_file():
            frames.append(_read_csv(journal))
    elif path.is_file():
        frames.append(_read_csv(path))
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return _typed(pd.concat(frames, ignore_index=True))


def check_single_config(df: pd.DataFrame, what: str = "the results") -> None:
    """Raise ResultsMismatchError if ``df`` holds rows of more than one configuration (naming the keys)."""
    present = [k for k in CONFIG_KEYS if k in df.columns]
    configs = df[present].astype(str).drop_duplicates()
    if len(configs) > 1:
        differing = [k for k in present if configs[k].nunique() > 1]
        raise ResultsMismatchError(
            f"{what} mix {len(configs)} configurations, differing in {', '.join(differing)}; "
            "summarise or merge each configuration separately."
        )


def rows_for(results: pd.DataFrame, records: Sequence[ImageRecord]) -> pd.DataFrame:
    """The rows of ``records`` only: a results file may hold more images from an earlier, larger run."""
    ids = {r.image_id for r in records}
    return results[results["image_id"].astype(str).isin(ids)].reset_index(drop=True)


# ----------------------------------------------------------------------------------------- the store
class ResultsStore:
    """The results file of one configuration: checks it, lists done pairs, appends rows durably."""

    def __init__(self, path: Path, config: Mapping[str, Any], *, overwrite: bool = False) -> None:
        if path.suffix not in (".csv", ".parquet"):
            raise ValueError(f"out_path must end in .csv or .parquet, got {path}")
        self.path = path
        self.config = dict(config)
        self.sidecar = path.with_name(path.name + ".config.json")
        self.images_path = path.with_name(path.stem + ".images.csv")
        self.journal = _journal_path(path) if path.suffix == ".parquet" else path
        path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for file in (path, self.journal, self.sidecar):
                file.unlink(missing_ok=True)
        self._check_config()
        _drop_torn_line(self.journal)
        self.sidecar.write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")

    def _check_config(self) -> None:
        stored: dict[str, Any] | None = None
        if self.sidecar.is_file():
            stored = json.loads(self.sidecar.read_text())
        else:
            existing = read_results(self.path)
            if len(existing):
                stored = existing.iloc[0][list(CONFIG_KEYS)].to_dict()
        if stored is None:
            return
        differing = [k for k in CONFIG_KEYS if str(stored.get(k, "")) != str(self.config[k])]
        if differing:
            details = "; ".join(f"{k}: stored {stored.get(k)!r}, now {self.config[k]!r}" for k in differing)
            raise ResultsMismatchError(
                f"{self.path} holds results of another configuration ({details}). Use another out_path, or pass "
                "overwrite=True to discard the existing results."
            )

    def done_pairs(self) -> set[tuple[str, str]]:
        """The (image_id, method) pairs already in the file."""
        df = read_results(self.path)
        return set(zip(df["image_id"].astype(str), df["method"].astype(str)))

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row and flush it to disk, writing the header first if the file is new."""
        new = not self.journal.is_file() or self.journal.stat().st_size == 0
        with self.journal.open("a", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            if new:
                writer.writerow(COLUMNS)
            writer.writerow([_cell(row.get(column, "")) for column in COLUMNS])
            handle.flush()

    def finish(self) -> None:
        """For Parquet: fold the journal into the Parquet file (written whole, then renamed into place)."""
        if self.path.suffix != ".parquet" or not self.journal.is_file():
            return
        df = read_results(self.path)
        partial = self.path.with_name(self.path.name + ".tmp")
        df.to_parquet(partial, index=False)
        partial.replace(self.path)
        self.journal.unlink()

    def read(self) -> pd.DataFrame:
        return read_results(self.path)


def _journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal.csv")


def _drop_torn_line(path: Path) -> None:
    """Cut a last line that a crash left without its newline (the rows before it are complete)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(cut)


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split())  # one row per line, whatever an error message held
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def _read_csv(path: Path) -> pd.DataFrame:
    # Readers never modify the file (a run may be writing it); a torn last line is skipped in memory.
    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    if not data.strip():
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.read_csv(io.BytesIO(data), dtype={"image_id": str, "method": str, "note": str, "weights": str, "model": str,
                                    "explainer_options": str, "library_version": str}, keep_default_na=True)  # fmt: skip


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    if "note" in df.columns:
        df["note"] = df["note"].fillna("").astype(str)
    for column in ("Y", "O", "drop", "increase", "deletion_auc", "insertion_auc", "pointing_hit", "energy_pointing",
                   "seconds", "metric_seconds"):  # fmt: skip
        if column in df.columns:
            df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    return df
