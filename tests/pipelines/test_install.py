"""`pip install .` gives the console commands: installed into a fresh venv that borrows this
environment's packages (no download), then run from outside the source tree."""
from __future__ import annotations

import shutil
import site
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("selfsup-pretrain", "selfsup-index", "selfsup-search", "selfsup-cluster", "selfsup-duplicates",
            "selfsup-evaluate", "selfsup-demo", "selfsup-app")


def test_pip_install_gives_the_console_commands(tmp_path):
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt", "app.py"):
        shutil.copy(REPO / name, src / name)
    for package in ("encoders", "index", "pipelines", "ui"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], check=True,
                             capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")  # pip, torch, ...
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    str(src)], check=True, cwd=tmp_path)
    for command in COMMANDS:
        assert (venv / "bin" / command).is_file(), command
    out = subprocess.run([venv / "bin" / "selfsup-search", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and "--index" in out.stdout and "--query" in out.stdout, out.stderr
    where = subprocess.run([py, "-c", "import pipelines.serve as s; print(s.APP, s.APP.is_file())"], check=True,
                           capture_output=True, text=True, cwd=tmp_path).stdout
    assert where.startswith(purelib) and where.strip().endswith("True")  # the page is installed beside pipelines/
