"""`pip install .` into a fresh venv: one `rarenet` namespace, and the packs it ships.

The project is copied (links kept) and built into a wheel with the dev venv's setuptools,
then installed with pip into a new venv that has no rarenet on its path. The new venv
borrows only the dev venv's third-party packages (a `.pth` line adds that site-packages
directory without running its `.pth` files, so the dev venv's editable rarenet finder
stays out).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from support import ROOT

PACKS_DIR = ROOT / "packs"
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".run", "build", "dist", "*.egg-info", "__pycache__", "*_cache", "*.db*"
)

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path | str = "/") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the project's wheel installed by pip; returns the venv."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=COPY_IGNORE)
    wheels = work / "wheels"
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(wheels), str(source)]
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("rarenet-*.whl")
    fresh = work / "fresh"
    venv.EnvBuilder(with_pip=False).create(fresh)
    installed = run(
        [sys.executable, "-m", "pip", "--python", str(fresh / "bin/python"), "install",
         "--quiet", "--no-deps", "--no-index", str(wheel)]
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    (site_packages(fresh) / "dev-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return fresh


def site_packages(fresh: Path) -> Path:
    (site,) = (fresh / "lib").glob("python3*/site-packages")
    return site


def test_the_wheel_installs_one_rarenet_namespace_and_no_generic_module(installed: Path) -> None:
    site = site_packages(installed)
    (record,) = site.glob("rarenet-*.dist-info/RECORD")
    top_level = {line.split("/", 1)[0].split(",", 1)[0] for line in record.read_text().split()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {
        "rarenet",
        "..",  # the console scripts, recorded relative to site-packages (../../../bin/…)
    }
    assert not (site / "baseline").exists() and not (site / "extension").exists()
    probe = run(
        [str(installed / "bin/python"), "-c",
         "import importlib.util as u, rarenet.baseline.cli, rarenet.extension.main\n"
         "print(u.find_spec('baseline'), u.find_spec('extension'), rarenet.baseline.cli.__file__)"]
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["None", "None", str(site / "rarenet/baseline/cli/__init__.py")]
    assert (site / "rarenet/baseline/console/templates").is_dir()  # package data came along


def test_the_installed_commands_run_from_anywhere(installed: Path) -> None:
    version = run([str(installed / "bin/rarenet"), "--version"])
    assert version.returncode == 0 and "rarenet, version 0.1.0" in version.stdout
    module = run([str(installed / "bin/python"), "-m", "rarenet", "--version"])
    assert module.returncode == 0 and module.stdout == version.stdout
    extension = run([str(installed / "bin/rarenet-extension"), "--help"])
    assert extension.returncode == 0 and "--socket" in extension.stdout


def test_packs_check_passes_from_root_against_the_packs_the_wheel_ships(
    installed: Path, tmp_path: Path
) -> None:
    shipped = site_packages(installed) / "rarenet/packs"
    checked = run([str(installed / "bin/rarenet"), "packs", "build", "--check"])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"packs are current (7 files in {shipped})" in checked.stdout
    refused = run([str(installed / "bin/rarenet"), "packs", "build"])
    assert refused.returncode == 2 and f"{shipped}: " in refused.stderr
    assert "--out DIR" in refused.stderr and not refused.stdout
    out = tmp_path / "packs"
    written = run([str(installed / "bin/rarenet"), "packs", "build", "--out", str(out)])
    assert written.returncode == 0, written.stderr
    built = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert built == sorted(p.relative_to(PACKS_DIR) for p in PACKS_DIR.rglob("*") if p.is_file())
    assert all((out / rel).read_bytes() == (PACKS_DIR / rel).read_bytes() for rel in built)


def test_the_installed_report_renders_from_the_templates_the_wheel_ships(
    installed: Path, tmp_path: Path
) -> None:
    rarenet = str(installed / "bin/rarenet")
    log = tmp_path / "fleet.log"
    simulated = run([rarenet, "simulate", "--hosts", "6", "--days", "1", "--attacks",
                     "--out", str(log)])  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr
    page = tmp_path / "report.html"
    reported = run([rarenet, "report", "--backtest", str(log), "--labels",
                    str(log.with_suffix(".labels.jsonl")), "--out", str(page)])  # fmt: skip
    assert reported.returncode == 0, reported.stderr
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html and " signals" in reported.stdout
