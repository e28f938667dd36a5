"""The README is a front page and the docs/ pages hold the rest: keep both true and reachable.

* Every relative link in README.md and docs/*.md resolves: the file exists and, for ``file.md#anchor`` or
  ``#anchor``, the target page has a heading with that GitHub anchor (``github_slug``).
* README.md stays at most 12,000 bytes and never points at ``../shared`` (it exists only beside the
  development checkout; users do not have it); the docs pages do not either.
* Every command the README's "Quick start" shows exists: for ``./run_all.sh`` lines the subcommand (if
  any) is one the pipeline or ``run_all.sh`` knows and each ``--option`` appears in the matching
  ``python -m gradscorecam.pipeline <run|merge> --help`` (what ``./run_all.sh --help`` prints; the module
  is called, not the script, to skip its install step); ``./run_tests.sh`` exists and is executable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_BYTES = 12_000
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the target ends at whitespace (an optional "title" follows) or ')'
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the Markdown outside fenced code blocks, inline code spans removed."""
    lines, in_fence = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append((number, INLINE_CODE.sub("", line)))
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text lower-cased, every character that is not a
    letter, digit, space, '-' or '_' dropped, spaces turned into '-' (github-slugger's rule).

    Rendered text: code spans keep their content without the backticks, links keep their text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "")
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page; a repeated slug gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def broken_links(page: Path) -> list[str]:
    """'line N: target (why)' for every relative link of the page that does not resolve."""
    problems = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if EXTERNAL.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            destination = (page.parent / path_part).resolve() if path_part else page
            if not destination.exists():
                problems.append(f"line {number}: {target} (no file {destination})")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                problems.append(f"line {number}: {target} (no heading with the anchor #{anchor} in {destination.name})")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    problems = broken_links(page)
    assert not problems, f"{page.relative_to(ROOT)} has broken links; fix the path or the heading:\n" + "\n".join(
        problems
    )


def test_github_slugs_match_hand_computed_anchors():
    # the anchors GitHub shows for these headings (hover the heading's link icon)
    assert (
        github_slug("Reproducing the paper: `run_all.sh` and the tests")
        == "reproducing-the-paper-run_allsh-and-the-tests"
    )
    assert github_slug("Does the paper's claim hold?") == "does-the-papers-claim-hold"
    assert github_slug("5. What a run costs") == "5-what-a-run-costs"
    assert github_slug("Your own network: the model-file contract") == "your-own-network-the-model-file-contract"
    assert (
        github_slug("Sanity checks: do the maps depend on the model?")
        == "sanity-checks-do-the-maps-depend-on-the-model"
    )
    assert github_slug("See [the docs](docs/x.md) now") == "see-the-docs-now"


def test_the_link_checker_finds_broken_links_and_anchors(tmp_path: Path):
    (tmp_path / "other.md").write_text("# Title\n\n## Part one\n\n## Part one\n\n```bash\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Here\n\n"
        "[ok](other.md) [ok](other.md#part-one) [ok](other.md#part-one-1) [ok](#here) [web](https://example.org/x)\n"
        "[bad](missing.md) [bad](other.md#part-two) [bad](other.md#not-a-heading) [bad](#nowhere)\n"
        "`[in code](missing_in_code.md)`\n\n```\n[in a fence](missing_in_fence.md)\n```\n"
    )
    problems = broken_links(page)
    assert [p.split(" ", 3)[2] for p in problems] == [
        "missing.md",
        "other.md#part-two",
        "other.md#not-a-heading",
        "#nowhere",
    ]
    assert all(p.startswith("line 6:") for p in problems)


def test_readme_is_a_front_page():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes, over {README_MAX_BYTES}: move the detail into a docs/ page and link it."
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_development_only_paths(page: Path):
    lines = [n for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1) if "../shared" in line]
    assert not lines, (
        f"{page.relative_to(ROOT)} mentions ../shared on lines {lines}: users do not have it. Show the command with "
        "the user's own files (e.g. --model-file my_model.py) and say in words where the measured files came from."
    )


# ------------------------------------------------------------------------------------------- Quick start
def quick_start_commands() -> list[str]:
    """The command lines of the README's Quick start code blocks: continuations joined, comments dropped."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Quick start\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, "README.md has no '## Quick start' section"
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", match.group(1), flags=re.M | re.S)
    commands = []
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"(^|\s)#.*$", "", command).strip()  # a comment starts with ' #'
            if command:
                commands.append(command)
    return commands


@cache
def module_help(module: str, *args: str) -> str:
    """What ``python -m module *args --help`` prints, with this checkout's library."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "lib"), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(
        [sys.executable, "-m", module, *args, "--help"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, f"python -m {module} {' '.join(args)} --help failed:\n{done.stderr}"
    return done.stdout


def pipeline_help(*args: str) -> str:
    """What ``python -m gradscorecam.pipeline *args --help`` prints, with this checkout's library."""
    return module_help("gradscorecam.pipeline", *args)


def pipeline_subcommands() -> set[str]:
    match = re.search(r"\{([a-z,_-]+)\}", pipeline_help())
    assert match, "python -m gradscorecam.pipeline --help lists no subcommands"
    return set(match.group(1).split(","))


def run_all_module(word: str) -> str | None:
    """The module that run_all.sh's own ``case`` line for ``word`` runs (``report) shift; exec python -m
    gradscorecam.report "$@"``), or None when run_all.sh has no such case."""
    script = (ROOT / "run_all.sh").read_text()
    line = re.search(rf"^\s*(?:[\w|-]+\|)?{re.escape(word)}(?:\|[\w|-]+)?\)(.*)$", script, flags=re.M)
    if line is None:
        return None
    module = re.search(r"python -m ([\w.]+)", line.group(1))
    assert module, f"run_all.sh's case for {word!r} runs no `python -m MODULE`: {line.group(0).strip()!r}"
    return module.group(1)


def options(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", help_text))


def test_quick_start_shows_both_commands():
    commands = quick_start_commands()
    assert any(c.startswith("./run_all.sh") for c in commands), commands
    assert any(c.startswith("./run_tests.sh") for c in commands), commands


@pytest.mark.parametrize("command", quick_start_commands())
def test_quick_start_commands_exist(command: str):
    words = command.split()
    if words[0] == "./run_tests.sh":
        script = ROOT / "run_tests.sh"
        assert script.is_file() and os.access(script, os.X_OK), "run_tests.sh is missing or not executable (chmod +x)"
        return
    assert words[0] == "./run_all.sh", (
        f"Quick start shows {command!r}: keep it to ./run_all.sh and ./run_tests.sh (other commands go in docs/)"
    )
    script = ROOT / "run_all.sh"
    assert script.is_file() and os.access(script, os.X_OK), "run_all.sh is missing or not executable (chmod +x)"
    subcommand = words[1] if len(words) > 1 and not words[1].startswith("-") else "run"
    if subcommand in pipeline_subcommands():
        known = options(pipeline_help(subcommand))
    else:
        module = run_all_module(subcommand)
        assert module, (
            f"Quick start shows './run_all.sh {subcommand}', which neither the pipeline "
            f"({sorted(pipeline_subcommands())}) nor run_all.sh's case statement knows"
        )
        known = options(module_help(module))
    used = {word.split("=", 1)[0] for word in words if word.startswith("--")}
    unknown = sorted(used - known)
    assert not unknown, (
        f"Quick start's {command!r} uses {unknown}, which `./run_all.sh {subcommand} --help` does not list; "
        f"it knows {sorted(known)}"
    )
