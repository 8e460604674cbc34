"""The user docs say what the code does: the shipped suites, the exit codes, the example CI workflow."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conformance.cases import available_suites
from conformance.cli import build_parser
from conformance.status import (
    EXIT_BAD_INPUT,
    EXIT_FAIL,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    SKIP,
    exit_code,
    verdict_word,
)

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
NUMBERS = {3: "Three", 4: "Four", 5: "Five", 6: "Six", 7: "Seven", 8: "Eight", 9: "Nine"}


def table_first_cells(text: str, after: str) -> list[str]:
    """The first cell of each row of the first Markdown table after the line ``after``."""
    lines = text[text.index(after) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:  # past the header and its rule
        if not line.startswith("|"):
            break
        rows.append(line.strip("|").split("|")[0].strip())
    return rows


class TestCases:
    def test_the_suites_that_ship_are_the_suites_listed(self) -> None:
        text = (DOCS / "cases.md").read_text(encoding="utf-8")
        suites = available_suites()
        sentence = f"{NUMBERS[len(suites)]} suites ship with the package"
        assert sentence in text
        assert sorted(s.strip("`") for s in table_first_cells(text, sentence)) == sorted(suites)


class TestCi:
    text = (DOCS / "ci.md").read_text(encoding="utf-8")

    def test_the_exit_code_table_has_every_code(self) -> None:
        codes = table_first_cells(self.text, "## Exit codes")
        expected = [EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED]
        assert codes == [str(code) for code in expected]

    def test_an_all_skipped_gate_exits_1_as_documented(self) -> None:
        assert exit_code([SKIP, SKIP]) == EXIT_FAIL and verdict_word([SKIP]) == "NOTHING CHECKED"
        assert "`check` and `run` print `NOTHING CHECKED` and exit 1" in " ".join(self.text.split())
        assert "still exit 0" not in self.text


class TestWorkflow:
    text = (DOCS / "examples" / "github-workflow.yml").read_text(encoding="utf-8")

    def commands(self) -> list[str]:
        """Every ``pip`` or ``conformance`` command line of the workflow (``run: >`` blocks folded)."""
        folded = re.sub(r"\n\s+--", " --", self.text)
        return [line.strip() for line in folded.splitlines() if re.match(r"\s*(pip|conformance) ", line)]

    def test_installs_from_git_not_pypi(self) -> None:
        installs = [c for c in self.commands() if c.startswith("pip install")]
        assert "pip install lstm-conformance" not in installs  # not on PyPI
        git = 'pip install "lstm-conformance @ git+https://github.com/YOUR-ORG/lstm-conformance@main"'
        assert git in installs
        assert "# Replace YOUR-ORG/lstm-conformance@main with the repository" in self.text

    def test_torch_is_the_pinned_cpu_build_installed_first(self) -> None:
        pin = next(line for line in (REPO / "constraints.txt").read_text().splitlines() if line.startswith("torch=="))
        installs = [c for c in self.commands() if c.startswith("pip install")]
        assert installs[0] == f"pip install {pin} --index-url https://download.pytorch.org/whl/cpu"

    def test_the_check_step_is_a_valid_check_command_writing_every_report(self) -> None:
        [check] = [c for c in self.commands() if c.startswith("conformance check")]
        args = build_parser().parse_args(shlex.split(check)[1:])
        assert args.command == "check" and str(args.model) == "model.onnx"
        assert (args.junit, args.html, args.json) == ("results/junit.xml", "results/report.html", "results/check.json")
        assert args.markdown == "$GITHUB_STEP_SUMMARY"
        assert "results/junit.xml" in self.text.split("mikepenz/action-junit-report@v5")[1]


class TestSemantics:
    """Every expected divergence that cites a row of reference/SEMANTICS.md cites one that exists."""

    def test_each_cited_row_is_a_row_of_a_semantics_table(self) -> None:
        semantics = (REPO / "reference" / "SEMANTICS.md").read_text()
        rows = {
            line.strip("|").split("|")[0].strip().replace("`", "")
            for line in semantics.splitlines()
            if line.startswith("| ") and not line.startswith("| Question")
        }
        cited: set[str] = set()
        for suite in sorted((REPO / "cases").glob("*.toml")):
            cited |= set(re.findall(r"SEMANTICS\.md, row '([^']+)'", suite.read_text()))
        assert cited, "no case file cites a SEMANTICS.md row"
        assert sorted(cited - rows) == []


DIVERGENCES = DOCS / "divergences"
SCRIPT_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tract": "tract"}


class TestDivergences:
    """docs/divergences: the README links each folder; each folder is complete and its script runs."""

    def test_every_readme_link_is_a_folder_and_every_folder_is_linked(self) -> None:
        readme = (REPO / "README.md").read_text()
        linked = set(re.findall(r"docs/divergences/([a-z0-9-]+)/", readme))
        folders = {p.name for p in DIVERGENCES.iterdir() if p.is_dir()}
        assert linked == folders

    @pytest.mark.parametrize("folder", sorted(p.name for p in (REPO / "docs" / "divergences").iterdir() if p.is_dir()))
    def test_the_script_runs_with_only_its_runtime_and_prints_the_difference(self, folder: str) -> None:
        import importlib.util
        import subprocess
        import sys

        path = DIVERGENCES / folder
        for name in ("README.md", "model.onnx", "inputs.npz", "expected.npz", "versions.json", "repro.py"):
            assert (path / name).is_file(), name
        script = (path / "repro.py").read_text()
        assert len(script.splitlines()) <= 25
        imported = set(re.findall(r"^import (\w+)", script, re.MULTILINE))
        assert "conformance" not in script and imported <= {"numpy", *SCRIPT_PACKAGES}, imported
        package = next(p for p in imported if p in SCRIPT_PACKAGES)
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed")
        done = subprocess.run(
            [sys.executable, "repro.py"], check=False, cwd=path, capture_output=True, text=True, timeout=120,
            env={"PATH": "/usr/bin:/bin", "RUST_BACKTRACE": "0"},
        )  # fmt: skip
        said = done.stdout + done.stderr
        assert "greatest |actual - expected|" in said or " raised " in said or "shape " in said, said
