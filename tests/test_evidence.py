"""The README's verdicts are the rendered tables of the per-image rows kept under data/evidence/.

Every kept results file is rendered again (gradscorecam.evidence) and the README or docs/evidence.md must hold
its tables verbatim: a number there that does not follow from the rows fails here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gradscorecam import evidence
from gradscorecam.verdict import claim_verdicts, compare

ROOT = Path(__file__).resolve().parents[1]
KEPT = sorted((ROOT / "data" / "evidence").glob("*.csv.gz"))


def test_numbers_are_printed_signed_with_a_typographic_minus():
    assert evidence.signed(-14.23, 1) == "\u221214.2" and evidence.signed(0.744, 2) == "+0.74"
    # a bound that rounds to 0 keeps its side of 0; only an exact 0 is unsigned
    assert evidence.signed(-0.01, 1) == "\u22120.0" and evidence.signed(0.0, 1) == "0.0"
    assert evidence.signed(float("nan"), 1) == "n/a"
    assert evidence.p_text(3e-5) == "< 1e-4" and evidence.p_text(0.04963) == "0.0496" and evidence.p_text(0.5) == "0.5"


def _frame() -> pd.DataFrame:
    """Six images, two methods: Grad++ScoreCAM's drop 2 points lower on each, one more object found on two of
    the three images with several objects, and half the time."""
    rows = []
    for i in range(6):
        several = i < 3
        for method, drop, found, seconds in (("Grad++ScoreCAM", 10.0 + i, 1.0 if i < 2 else 0.5, 1.0),
                                             ("Score-CAM", 12.0 + i, 0.5, 2.0)):  # fmt: skip
            rows.append({"image_id": f"im{i}", "method": method, "drop": drop, "increase": 0.0,
                         "objects_found": found if several else float("nan"),
                         "min_object_energy": 1.5 if several else float("nan"), "seconds": seconds})  # fmt: skip
    return pd.DataFrame(rows)


def test_claims_table_reads_the_paired_numbers():
    df = _frame()
    table = compare(df, n_resamples=1000)
    text = evidence.claims_markdown(claim_verdicts(table))
    lines = text.splitlines()
    assert lines[0] == "| claim | verdict | Grad++ScoreCAM \u2212 baseline [95 % CI] | p |"
    # every difference is -2: the interval is [-2, -2]; six same-sign differences give the exact p = 2/64
    assert "| lower Average Drop than Score-CAM | **holds** | \u22122.00 points [\u22122.00, \u22122.00] " \
           "(12.5 % against 14.5 %) | 0.0312 |" in lines  # fmt: skip
    assert (
        "| faster than Score-CAM | **holds** | 0.50\u00d7 Score-CAM's time [0.50, 0.50] (1 s against 2 s per image) |"
        in text
    )
    assert "| lower Average Drop than Grad-CAM++ | **not measured (Grad-CAM++ or drop not in the comparison)** | " \
           "not measured | n/a |" in lines  # fmt: skip
    slower = claim_verdicts(compare(df[df.method == "Grad++ScoreCAM"].assign(method="Grad++ScoreCAM").pipe(
        lambda d: pd.concat([d, d.assign(method="Grad-CAM++")])), n_resamples=100))  # fmt: skip
    assert "| faster than Score-CAM | **not measured (Score-CAM or seconds not in the comparison)** | not measured |" \
        in evidence.claims_markdown(slower)  # fmt: skip


def test_objects_table_counts_only_images_with_several_objects():
    df = _frame()
    text = evidence.objects_markdown(df, compare(df, n_resamples=1000))
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:]}
    assert set(rows) == {"Score-CAM", "Grad++ScoreCAM"}
    # Grad++ScoreCAM finds 1, 1, 1/2 -> 83.3 %; Score-CAM 1/2 on each -> 50 %; the difference +1/3 on average
    assert rows["Grad++ScoreCAM"].startswith("| Grad++ScoreCAM | 3 | 83.3 [")
    assert rows["Score-CAM"].startswith("| Score-CAM | 3 | 50.0 [50.0, 50.0] | 1.50 [1.50, 1.50] | +33.3 points [")
    # two non-zero differences of one sign (the zero is dropped): exact two-sided signed-rank p = 2 / 2**2
    assert "+33.3 points [0.0, +50.0] (N = 3) | 0.5 | cannot tell at N = 3 |" in rows["Score-CAM"]
    assert evidence.objects_markdown(df.drop(columns=["objects_found"]), compare(df, n_resamples=100)) == ""


def test_every_kept_results_file_is_documented():
    assert KEPT, "data/evidence/ holds the rows behind the README's verdicts"
    documented = (ROOT / "data" / "README.md").read_text()
    for path in KEPT:
        assert f"`evidence/{path.name}`" in documented, f"data/README.md does not describe {path.name}"


@pytest.mark.parametrize("path", KEPT, ids=[p.name for p in KEPT])
def test_readme_verdicts_are_the_rendered_rows(path: Path):
    rendered = evidence.evidence_markdown([path])
    # whole lines: a page's table with an extra or a changed row does not match
    pages = {name: f"\n{(ROOT / name).read_text()}\n" for name in ("README.md", "docs/evidence.md")}
    for part in rendered.split("\n\n"):  # the provenance line, the claims table, the per-object table if any
        holders = [name for name, text in pages.items() if f"\n{part}\n" in text]
        assert holders, (
            f"neither README.md nor docs/evidence.md holds this part of {path.name} as "
            f"`python -m gradscorecam.evidence data/evidence/{path.name}` renders it:\n{part}"
        )
    claims = rendered.split("\n\n")[1]
    assert f"\n{claims}\n" in pages["README.md"], f"the README's verdict table of {path.name} is not the rendered one"
