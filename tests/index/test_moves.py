"""Moving duplicates out and back: byte identity, refusals, and a SIGKILL half way."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from encoders.files import CRASH_ENV, file_sha256
from index.manifest import Item
from index.moves import MoveRefused, move_files, plan_moves, read_moves, undo_moves

REPO = Path(__file__).resolve().parents[2]


def snapshot(root: Path) -> dict:
    """Every file under root -> (bytes, mtime_ns)."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    names = ["a.jpg", "a_copy.jpg", "sub/a_again.jpg", "b.png", "b2.png", "c.png"]
    items = []
    for i, n in enumerate(names):
        (root / n).write_bytes(os.urandom(100 + i))
        st = (root / n).stat()
        items.append(Item(n, st.st_size, st.st_mtime_ns, file_sha256(root / n), i))
    groups, keepers = [[0, 1, 2], [3, 4]], [0, 4]
    return root, items, groups, keepers


def test_move_then_undo_is_byte_identical(folder, tmp_path):
    root, items, groups, keepers = folder
    before = snapshot(root)
    plan = plan_moves(root, tmp_path / "extras", items, groups, keepers)
    assert [m.src for m in plan] == ["a_copy.jpg", "sub/a_again.jpg", "b.png"]
    manifest = tmp_path / "extras" / "moves.json"
    assert move_files(plan, root, tmp_path / "extras", manifest) == 3
    assert sorted(snapshot(root)) == ["a.jpg", "b2.png", "c.png"]
    moved = snapshot(tmp_path / "extras")
    for m in plan:
        assert moved[m.dest] == before[m.src]  # same bytes and mtime at the destination
    _, listed = read_moves(manifest)
    assert [(m.src, m.state) for m in listed] == [(m.src, "moved") for m in plan]
    counts = undo_moves(manifest)
    assert counts == {"restored": 3, "in_place": 0, "problems": []}
    assert snapshot(root) == before
    assert undo_moves(manifest)["in_place"] == 3  # a second undo changes nothing


def test_refusals_touch_nothing(folder, tmp_path):
    root, items, groups, keepers = folder
    before = snapshot(root)
    with pytest.raises(MoveRefused, match="inside the data folder"):
        plan_moves(root, root / "dups", items, groups, keepers)
    with pytest.raises(MoveRefused, match="inside the data folder"):
        plan_moves(root, root, items, groups, keepers)
    (tmp_path / "extras" / "sub").mkdir(parents=True)
    (tmp_path / "extras" / "sub" / "a_again.jpg").write_bytes(b"someone else's file")
    with pytest.raises(MoveRefused, match="already exists"):
        plan_moves(root, tmp_path / "extras", items, groups, keepers)
    (root / "b.png").write_bytes(b"edited since indexing")
    with pytest.raises(MoveRefused, match="changed since"):
        plan_moves(root, tmp_path / "other", items, groups, keepers)
    (root / "b.png").write_bytes(before["b.png"][0])
    os.utime(root / "b.png", ns=(before["b.png"][1], before["b.png"][1]))
    assert snapshot(root) == before
    assert (tmp_path / "extras" / "sub" / "a_again.jpg").read_bytes() == b"someone else's file"


def test_undo_never_overwrites(folder, tmp_path):
    root, items, groups, keepers = folder
    manifest = tmp_path / "t" / "moves.json"
    move_files(plan_moves(root, tmp_path / "t", items, groups, keepers), root, tmp_path / "t", manifest)
    (root / "b.png").write_bytes(b"a new file with the old name")
    counts = undo_moves(manifest)
    assert counts["restored"] == 2
    assert counts["problems"] == [f"b.png: also at {tmp_path / 't' / 'b.png'}; left as it is"]
    assert (root / "b.png").read_bytes() == b"a new file with the old name"


MOVER = """
import json, sys
from pathlib import Path
from index.manifest import Item
from index.moves import Move, move_files
spec = json.loads(Path(sys.argv[1]).read_text())
plan = [Move(**m) for m in spec["plan"]]
move_files(plan, spec["root"], spec["target"], spec["manifest"])
"""


@pytest.mark.parametrize("point", ["moves:before:2", "moves:after:2", "moves:after:3"])
def test_sigkill_half_way_leaves_every_file_moved_and_listed_or_untouched(folder, tmp_path, point):
    root, items, groups, keepers = folder
    before = snapshot(root)
    target, manifest = tmp_path / "extras", tmp_path / "extras" / "moves.json"
    plan = plan_moves(root, target, items, groups, keepers)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"plan": [m.__dict__ for m in plan], "root": str(root), "target": str(target),
                                "manifest": str(manifest)}))
    proc = subprocess.run([sys.executable, "-c", MOVER, str(spec)], cwd=REPO, env={**os.environ, CRASH_ENV: point},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    _, listed = read_moves(manifest)
    assert {m.src for m in listed} == {m.src for m in plan}  # listed before anything moved
    now, moved = snapshot(root), snapshot(target)
    n_moved = 0
    for path, content in before.items():
        if path in now:
            assert now[path] == content and path not in moved  # untouched
        else:
            assert moved[path] == content and path in {m.src for m in listed}  # moved and listed
            n_moved += 1
    assert n_moved == {"moves:before:2": 1, "moves:after:2": 2, "moves:after:3": 3}[point]
    undo_moves(manifest)
    assert snapshot(root) == before
