"""The package as pip installs it: one top-level package that holds its configs and data, and
works from any directory."""

import subprocess
import sys
import zipfile

from conftest import ROOT


def test_pip_install_adds_one_top_level_package_that_runs_from_anywhere(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "wheel"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"plasticity_bench"}
    assert "plasticity_bench/configs/config.yaml" in names and "plasticity_bench/configs/shifts.yaml" in names
    assert "plasticity_bench/analysis/data/random_scores.csv" in names
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) == [
        "bin",
        "plasticity_bench",
    ]
    code = (
        "import plasticity_bench, sys; from plasticity_bench.runner.config import compose_config; "
        "from plasticity_bench.shifts.train import config_from; "
        "print(plasticity_bench.__file__); print(compose_config(['env=minatar']).env.suite, "
        "config_from(['task=label_reset']).task)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(target), "PATH": ""},
    )
    lines = run.stdout.splitlines()
    assert lines[0].startswith(str(target)), run.stderr  # the installed copy, not this checkout
    assert lines[1] == "minatar label_reset"
