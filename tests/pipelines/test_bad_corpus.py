"""pretrain, build_index, build_index --update and search over the generated corpus of bad inputs
(tests/bad_corpus.py): the usable images are used, the rest skipped and counted by reason, exit 0."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import encoders.imagefolder
from index.store import load_index
from pipelines import build_index, pretrain, search
from tests.bad_corpus import Corpus, deny_reading, make_corpus, relative, vanish_after_listing


@pytest.fixture
def corpus(tmp_path, monkeypatch) -> Corpus:
    c = make_corpus(tmp_path / "data")
    deny_reading(monkeypatch, c.root / c.locked)
    return c


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    """pretrain over the corpus (smallcnn, 16 px, 2 steps): (corpus, run dir, paths it decoded, exit code)."""
    decoded = []
    with pytest.MonkeyPatch.context() as mp:
        c = make_corpus(tmp_path_factory.mktemp("pretrain") / "data")
        deny_reading(mp, c.root / c.locked)
        vanish_after_listing(mp, encoders.imagefolder, c.root / c.vanishing)
        real_decode = pretrain.decode_folder

        def recording_decode(*args, **kwargs):
            out = real_decode(*args, **kwargs)
            decoded.extend(out[0])
            return out
        mp.setattr(pretrain, "decode_folder", recording_decode)
        run = c.root.parent / "run"
        code = pretrain.main(["--data", str(c.root), "--out", str(run), "--backbone", "smallcnn", "--image-size", "16",
                              "--batch-size", "8", "--epochs", "1", "--workers", "0", "--no-progress"])
    return c, run, decoded, code


def test_pretrain_uses_exactly_the_usable_images(corpus_run):
    c, run, decoded, code = corpus_run
    assert code == 0
    assert relative(decoded, c.root) == c.usable
    summary = json.loads((run / "summary.json").read_text())
    assert summary["images"] == len(c.usable) == 16
    assert summary["skipped"]["by_reason"] == dict(c.reasons())
    assert summary["skipped"]["total"] == len(c.skipped) == 10
    assert summary["step"] == 2 and (run / "encoder.safetensors").is_file()


def build(c: Corpus, encoder: Path, out: Path, *extra) -> int:
    return build_index.main(["--data", str(c.root), "--encoder", str(encoder), "--out", str(out),
                             "--workers", "0", "--batch-size", "8", "--no-progress", *extra])


def indexed(out: Path) -> tuple[set[str], dict]:
    m = load_index(out, use_gpu=False).manifest
    return {it.path for it in m.items}, m.skipped


def test_build_and_update_use_exactly_the_usable_images(corpus, corpus_run, tmp_path, monkeypatch, caplog):
    encoder, out = corpus_run[1], tmp_path / "index"
    vanish_after_listing(monkeypatch, build_index, corpus.root / corpus.vanishing)
    caplog.set_level(logging.INFO)
    assert build(corpus, encoder, out) == 0
    paths, skipped = indexed(out)
    assert paths == corpus.usable
    assert skipped["by_reason"] == dict(corpus.reasons()) and skipped["total"] == 10
    assert "skipped 10 files (" in caplog.text and "Traceback" not in caplog.text
    ids = {it.path: it.id for it in load_index(out, use_gpu=False).manifest.items}

    # --update after the folder changed: one good file removed, one replaced by a truncated copy,
    # one good and one more bad file added; the vanishing file is back and vanishes again
    root = corpus.root
    (root / "good_0.png").unlink()
    good_1 = (root / "good_1.jpg").read_bytes()
    (root / "good_1.jpg").write_bytes(good_1[:len(good_1) * 3 // 4])
    (root / "new folder ü").mkdir()
    (root / "new folder ü" / "added.png").write_bytes((root / "good_2.png").read_bytes())
    (root / "new folder ü" / "fake.png").write_bytes(b"<html>not an image</html>")
    (root / corpus.vanishing).write_bytes((root / "good_3.jpg").read_bytes())
    caplog.clear()
    assert build(corpus, encoder, out, "--update") == 0
    paths, skipped = indexed(out)
    assert paths == corpus.usable - {"good_0.png", "good_1.jpg"} | {"new folder ü/added.png"}
    expected = corpus.reasons()
    expected.update(["corrupt image", "not a decodable image"])
    assert skipped["by_reason"] == dict(expected)
    assert "added 1, changed 0, removed 2, unchanged 14, skipped 12" in caplog.text
    for it in load_index(out, use_gpu=False).manifest.items:  # files that stayed keep their ids
        assert it.id == ids.get(it.path, it.id)


def error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:") or "Traceback" in ln]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_search_with_each_bad_file_is_a_one_line_error(corpus, corpus_run, tmp_path, capsys):
    encoder, out = corpus_run[1], tmp_path / "index"
    (corpus.root / corpus.vanishing).unlink()  # as if it vanished before the search
    assert build(corpus, encoder, out) == 0
    capsys.readouterr()
    for rel, reason in sorted(corpus.skipped.items()):
        if rel == "loopdir":  # a folder given as --query is searched (tested below with x.jpg)
            continue
        code = search.main(["--index", str(out), "--query", str(corpus.root / rel), "--device", "cpu"])
        assert code == 2, rel
        line = error_line(capsys)
        if rel == corpus.vanishing:
            assert "no such file or folder" in line, line
        elif rel == "notes.txt":  # given by name, its extension does not matter: it does not decode
            assert "not a decodable image" in line, line
        else:
            assert f"{rel}: {reason}" in line, line

    # every usable file as a query (x.jpg given as a folder), then all files at once: exit 0
    queries = sorted({rel.split("/")[0] for rel in corpus.usable})
    assert search.main(["--index", str(out), "--query", *[str(corpus.root / q) for q in queries], "--json",
                        "-k", "1", "--device", "cpu"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert relative([r["query"] for r in results], corpus.root) == corpus.usable
    assert all(r["neighbours"][0]["path"] == relative([r["query"]], corpus.root).pop() for r in results)
    everything = sorted(str(p) for p in corpus.root.iterdir() if p.name != "loopdir")
    assert search.main(["--index", str(out), "--query", *everything, "--json", "-k", "1", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert relative([r["query"] for r in json.loads(captured.out)], corpus.root) == corpus.usable
    assert "Traceback" not in captured.err
