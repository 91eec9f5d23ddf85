"""Imports run downward: the page (app.py, ui/) never imports pipelines/; index/ knows no Streamlit,
Altair or HTML; encoders/ no Streamlit or faiss."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported(path: Path) -> set[str]:
    """Top-level package names a module imports (anywhere in it, lazily too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("files, banned", [
    (["app.py", "ui/*.py"], {"pipelines"}),
    (["index/*.py"], {"streamlit", "altair", "html", "ui", "pipelines"}),
    (["encoders/**/*.py"], {"streamlit", "faiss", "ui", "index", "pipelines"}),
])
def test_imports_run_downward(files, banned):
    paths = [p for pattern in files for p in REPO.glob(pattern)]
    assert paths
    wrong = {str(p.relative_to(REPO)): sorted(imported(p) & banned) for p in paths if imported(p) & banned}
    assert not wrong, wrong
