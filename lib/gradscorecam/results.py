"""The results store: one CSV (or Parquet) file of rows per evaluation configuration, and reading it back.

:class:`ResultsStore` checks a file's configuration against the one asked for, lists the (image, method) pairs
already done, and appends rows durably (a Parquet file is journaled to ``<out>.journal.csv`` while running);
:func:`read_results`, :func:`merge_results`, :func:`check_single_config` and :func:`rows_for` read results
back. The evaluation loop that writes the rows is :mod:`gradscorecam.runner`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .datasets.records import ImageRecord
from .errors import ResultsMismatchError

#: The keys that define an evaluation, the same for every row of a file; rows of different configurations never
#: share a file.
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
)
#: Part of the configuration, per method: the row's explainer's effective options, defaults included (sorted
#: JSON of ``explainer.options()``); the same for every row of one method in a file.
METHOD_CONFIG_KEYS = ("explainer_options",)
#: Recorded with every row but allowed to differ between the parts of one run (a resumed run may move, and
#: may run under a later commit: the library version is provenance, not configuration).
ENVIRONMENT_KEYS = ("library_version", "torch_version", "device")
#: The start of a row's note when the explainer's map was zero everywhere (the runner's rule, summarize's count).
DEGENERATE_NOTE = "all-zero map"
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
    "objects_found",
    "min_object_energy",
    "seconds",
    "metric_seconds",
    "note",
)
#: The numeric per-row values, from Y to metric_seconds: NaN in a row without them, floats when read.
METRIC_COLUMNS = RESULT_COLUMNS[RESULT_COLUMNS.index("Y") : RESULT_COLUMNS.index("note")]
COLUMNS = RESULT_COLUMNS + CONFIG_KEYS + METHOD_CONFIG_KEYS + ENVIRONMENT_KEYS


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
    """Read a results file (CSV, gzip-compressed CSV ``.csv.gz`` as kept under ``data/evidence/``, or Parquet
    plus a Parquet run's unfinished journal) with the runner's dtypes."""
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
    """Raise ResultsMismatchError if ``df`` holds rows of more than one configuration: the shared keys
    (:data:`CONFIG_KEYS`) differ between rows, or one method's explainer options differ between its rows
    (naming the keys, and the method and option)."""
    present = [k for k in CONFIG_KEYS if k in df.columns]
    if present:  # a table without configuration columns (built by hand) has one, unknown, configuration
        configs = df[present].astype(str).drop_duplicates()
        if len(configs) > 1:
            differing = [k for k in present if configs[k].nunique() > 1]
            first, second = configs.iloc[0].to_dict(), configs.iloc[1].to_dict()
            raise ResultsMismatchError(
                f"{what} mix {len(configs)} configurations, differing in {', '.join(differing)} (e.g. "
                f"{'; '.join(config_differences(first, second, present))}); summarise or merge each configuration "
                "separately."
            )
    if "explainer_options" in df.columns and "method" in df.columns:
        for method, options in df.groupby("method", sort=False)["explainer_options"]:
            values = options.astype(str).unique()
            if len(values) > 1:
                found = option_differences({method: parse_options(values[0])}, {method: parse_options(values[1])})
                raise ResultsMismatchError(
                    f"{what} mix {len(values)} sets of explainer options for {method} ({'; '.join(found)}): another "
                    "method ran under the same name; summarise or merge each configuration separately."
                )


def config_differences(
    stored: Mapping[str, Any], now: Mapping[str, Any], keys: Sequence[str] = CONFIG_KEYS
) -> list[str]:
    """What differs between two configurations' shared keys, one phrase per key."""
    return [
        f"{key}: stored {stored.get(key)!r}, now {now.get(key)!r}"
        for key in keys
        if str(stored.get(key, "")) != str(now.get(key, ""))
    ]


def option_differences(stored: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Per (method, option) of the methods in both ``{method: options}`` mappings whose values differ, e.g.
    ``explainer option Grad++ScoreCAM.max_channels: stored 64, now 32``. A method in one mapping only is not a
    difference (adding a method to a results file is a resume)."""
    missing = "(not recorded)"
    found = []
    for method in [m for m in now if m in stored]:
        old, new = stored[method], now[method]
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            if old != new:
                found.append(f"explainer options of {method}: stored {old!r}, now {new!r}")
            continue
        for option in sorted(set(old) | set(new)):
            if old.get(option, missing) != new.get(option, missing):
                found.append(
                    f"explainer option {method}.{option}: stored {old.get(option, missing)!r}, "
                    f"now {new.get(option, missing)!r}"
                )
    return found


def parse_options(text: Any) -> Any:
    """A row's ``explainer_options`` JSON as a dict (the text itself if it is not JSON)."""
    try:
        return json.loads(str(text))
    except ValueError:
        return text


def rows_for(results: pd.DataFrame, records: Sequence[ImageRecord]) -> pd.DataFrame:
    """The rows of ``records`` only: a results file may hold more images from an earlier, larger run."""
    ids = {r.image_id for r in records}
    return results[results["image_id"].astype(str).isin(ids)].reset_index(drop=True)


# ----------------------------------------------------------------------------------------- the store
class ResultsStore:
    """The results file of one configuration: checks it, lists done pairs, appends rows durably.

    ``config`` holds the shared keys (:data:`CONFIG_KEYS`), ``options`` each method's effective explainer
    options. The sidecar ``<out>.config.json`` keeps both (``explainer_options`` as ``{method: options}``, over
    every method the file has seen); opening the file with a different shared key, or different options for a
    method already there, raises ResultsMismatchError naming them. A new method is a resume.
    """

    def __init__(
        self,
        path: Path,
        config: Mapping[str, Any],
        *,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        overwrite: bool = False,
    ) -> None:
        if path.suffix not in (".csv", ".parquet"):
            raise ValueError(f"out_path must end in .csv or .parquet, got {path}")
        self.path = path
        self.config = dict(config)
        # as the sidecar and the rows give them back (JSON: tuples become lists), so that equal compares equal
        self.options: dict[str, Any] = json.loads(json.dumps(dict(options or {}), sort_keys=True, default=str))
        self.sidecar = path.with_name(path.name + ".config.json")
        self.images_path = path.with_name(path.stem + ".images.csv")
        self.journal = _journal_path(path) if path.suffix == ".parquet" else path
        path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for file in (path, self.journal, self.sidecar):
                file.unlink(missing_ok=True)
        stored_options = self._check_config()
        _drop_torn_line(self.journal)
        self._check_columns()
        sidecar = {**self.config, "explainer_options": {**stored_options, **self.options}}
        self.sidecar.write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str) + "\n")

    def _check_config(self) -> dict[str, Any]:
        """Raise on a mismatch; return the stored per-method options (to keep those of methods not run now)."""
        stored: dict[str, Any] | None = None
        stored_options: dict[str, Any] = {}
        if self.sidecar.is_file():
            stored = json.loads(self.sidecar.read_text())
            stored_options = stored.get("explainer_options", {})
            if not isinstance(stored_options, dict):  # written before the effective options were recorded
                raise ResultsMismatchError(
                    f"{self.path} was written before explainers' effective options were recorded, so what its rows "
                    "ran cannot be checked against this run. Use another out_path, or pass overwrite=True to "
                    "discard it."
                )
        else:
            existing = read_results(self.path)
            if len(existing):
                stored = existing.iloc[0][[k for k in CONFIG_KEYS if k in existing.columns]].to_dict()
                if "explainer_options" in existing.columns:
                    firsts = existing.drop_duplicates("method")
                    stored_options = {
                        m: parse_options(o) for m, o in zip(firsts["method"], firsts["explainer_options"], strict=True)
                    }
        if stored is None:
            return {}
        differing = config_differences(stored, self.config) + option_differences(stored_options, self.options)
        if differing:
            raise ResultsMismatchError(
                f"{self.path} holds results of another configuration ({'; '.join(differing)}). A changed explainer "
                "option (a default of the library included) means another method ran. Use another out_path, or "
                "pass overwrite=True to discard the existing results."
            )
        return stored_options

    def _check_columns(self) -> None:
        """Rows are appended in :data:`COLUMNS`' order. A file written by an older library (fewer columns, e.g.
        before the per-object scores) or with its columns in another order is rewritten once with this header
        (the values kept, the new columns empty) so that appended rows line up; a file with columns this
        library does not know is refused."""
        if not self.journal.is_file() or self.journal.stat().st_size == 0:
            return
        with self.journal.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        if tuple(header) == COLUMNS:
            return
        unknown = [c for c in header if c not in COLUMNS]
        if unknown:
            raise ResultsMismatchError(
                f"{self.journal} has unknown columns {unknown}: it was not written by this library's runner, or by "
                "a newer one. Its rows cannot be continued; use another out_path (or pass overwrite=True to "
                "discard it)."
            )
        rows = _read_csv(self.journal).reindex(columns=list(COLUMNS))
        partial = self.journal.with_name(self.journal.name + ".tmp")
        rows.to_csv(partial, index=False, na_rep="nan", lineterminator="\n")
        partial.replace(self.journal)

    def done_pairs(self) -> set[tuple[str, str]]:
        """The (image_id, method) pairs already in the file."""
        df = read_results(self.path)
        return set(zip(df["image_id"].astype(str), df["method"].astype(str), strict=True))

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
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    data = data[: data.rfind(b"\n") + 1]
    if not data.strip():
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.read_csv(io.BytesIO(data), dtype={"image_id": str, "method": str, "note": str, "weights": str, "model": str,
                                    "explainer_options": str, "library_version": str, "target_layer": str}, keep_default_na=True)  # fmt: skip


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    if "note" in df.columns:
        df["note"] = df["note"].fillna("").astype(str)
    for column in METRIC_COLUMNS:
        if column in df.columns:
            df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    return df
