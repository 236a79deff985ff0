"""The docs name what the registries hold and only documents that exist; the packages keep their layers."""

import re
import subprocess
from pathlib import Path

from conftest import ROOT
from plasticity_bench import agents
from plasticity_bench.analysis.pages import blocks
from plasticity_bench.envs import SUITES
from plasticity_bench.interventions import INTERVENTIONS


def reference_rows(section: str) -> set[str]:
    """The names in the first column of the tables of one section of docs/reference.md."""
    text = (ROOT / "docs" / "reference.md").read_text().split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, re.M))


def test_the_reference_lists_every_registered_intervention_agent_and_suite():
    assert reference_rows("Interventions") == {"none", *INTERVENTIONS}
    assert set(agents.AGENTS) <= {
        name.split("`")[1]
        for name in re.findall(r"^### `[a-z0-9_]+`", (ROOT / "docs" / "reference.md").read_text(), re.M)
    }
    assert set(SUITES) <= reference_rows("Environments")


GENERATED = {
    "aggregate.md",
    "continual.md",
    "continual_summary.md",
    "shifts.md",
}  # tables that `make figures` writes under OUT/tables/


def test_no_file_names_a_document_the_repository_lacks():
    """Every ``docs/...md`` or ``*.md`` path named in code, configs, docs and the README exists."""
    named = re.compile(r"(?<![\w/.-])((?:docs/)?[\w/-]+\.md)\b")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    missing = []
    for path in tracked:
        if (
            path.startswith("results/")
            or not path.endswith((".py", ".md", ".yaml", "Makefile"))
            or not (ROOT / path).exists()
        ):
            continue
        for name in named.findall((ROOT / path).read_text()):
            candidates = [
                ROOT / name,
                ROOT / Path(path).parent / name,
                ROOT / "docs" / name,
                ROOT / "docs" / "experiments" / name,
            ]
            if not any(c.exists() for c in candidates) and Path(name).name not in GENERATED:
                missing.append(f"{path}: {name}")
    assert not missing, missing


def layer(module: str) -> str:
    """``plasticity_bench.nets.networks`` -> ``nets``; anything else -> its top-level name."""
    parts = module.split(".")
    return parts[1] if parts[0] == "plasticity_bench" and len(parts) > 1 else parts[0]


def imports_of(package: str) -> dict[str, set[str]]:
    """module path -> the top-level packages it imports (from the source, with ast)."""
    import ast

    found = {}
    for path in (ROOT / "plasticity_bench" / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {layer(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names |= (
                    {layer(node.module)}
                    if node.module != "plasticity_bench"
                    else {a.name for a in node.names}
                )
        found[str(path.relative_to(ROOT))] = names
    return found


OURS = {"core", "nets", "agents", "envs", "interventions", "probes", "runner", "shifts", "analysis", "bench"}


def test_each_layer_imports_only_the_layers_below_it():
    allowed = {
        "core": set(),
        "nets": {"core"},
        "envs": {"core"},
        "probes": {"core", "nets"},
        "interventions": {"core", "nets"},
        "agents": {"core", "nets"},
        "analysis": {"core"},
        "shifts": {"core", "nets", "interventions", "probes", "runner"},
    }
    for package, below in allowed.items():
        for module, names in imports_of(package).items():
            wrong = (names & OURS) - below - {package}
            assert not wrong, f"{module} imports {sorted(wrong)}"


def test_the_bench_references_import_nothing_from_the_project():
    found = imports_of("bench/references")
    assert len(found) >= 4  # the package and its three yardsticks
    for module, names in found.items():
        assert not names & OURS, f"{module} imports {sorted(names & OURS)}: a yardstick must stand alone"


def test_probes_interventions_shifts_and_analysis_do_not_load_agents_even_indirectly():
    import subprocess
    import sys

    code = (
        "import sys; from plasticity_bench import probes, interventions; "
        "import plasticity_bench.shifts.train, plasticity_bench.analysis.__main__; "
        "print(sorted(m for m in ('agents', 'envs', 'runner.config') "
        "if 'plasticity_bench.' + m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_every_result_page_holds_its_generated_tables_unchanged():
    """docs/experiments/*.md and the README's results: every marked block is its file (make pages);
    a page without one types its numbers by hand."""
    for page in [*sorted((ROOT / "docs" / "experiments").glob("*.md")), ROOT / "README.md"]:
        found = blocks(page.read_text())
        assert found, f"{page.name} has no generated table"
        for path, body in found:
            assert body == (ROOT / path).read_text(), f"{page.name}: {path} changed; run make pages"


def test_the_speed_page_holds_the_bench_tables_of_the_committed_csvs():
    """docs/speed.md: every table is a committed bench CSV's markdown (bench --table), put there
    by make pages."""
    from plasticity_bench.bench.__main__ import markdown

    found = blocks((ROOT / "docs" / "speed.md").read_text())
    assert len(found) >= 2
    for path, body in found:
        assert body == (ROOT / path).read_text() == markdown(ROOT / path.replace(".md", ".csv")), path


def test_the_committed_shifts_table_is_what_the_csvs_give():
    from plasticity_bench.analysis.load import load_runs
    from plasticity_bench.analysis.shifts import markdown, per_task

    runs = ROOT / "results" / "shifts_interventions"
    committed = (runs / "figures" / "tables" / "shifts.md").read_text()
    assert markdown(per_task(load_runs(runs).metrics)) == committed


def test_no_file_points_outside_the_repository():
    import subprocess

    from tests.conftest import ROOT

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    outside = "../" + "shared"  # the developers' notes: users of the repository do not have them
    offenders = [
        f
        for f in tracked
        if not f.endswith(".png")
        and (ROOT / f).is_file()
        and outside in (ROOT / f).read_text(errors="ignore")
    ]
    assert offenders == []
    assert (ROOT / "docs" / "science.md").exists()
