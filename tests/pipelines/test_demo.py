"""pipelines.demo end to end: a user's own folder (never written), re-runs that embed only what
changed, the quality report, and the sample collection."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from PIL import Image

from encoders.copies import REPORT_FILE
from encoders.fashion_mnist import FASHION_MNIST_DIR
from encoders.files import file_sha256
from index.store import load_index
from pipelines import demo, evaluate, sample_photos
from tests.conftest import draw_shape_image, make_shape_folder

# tiny, fast pretraining for tests; the demo itself passes only --data --out --minutes --resume
PRETRAIN = "--backbone smallcnn --image-size 16 --batch-size 16 --max-steps 2 --workers 0 --no-progress"


def snapshot(folder: Path) -> dict:
    """Every entry under `folder` (files and folders) with its size, mtime and mode."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[p.relative_to(folder).as_posix()] = (st.st_size, st.st_mtime_ns, st.st_mode)
    st = folder.lstat()
    out["."] = (st.st_mtime_ns, st.st_mode)
    return out


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = make_shape_folder(tmp_path / "My Photos", per_class=6, seed=5)
    make_shape_folder(folder / "2024 trip", per_class=2, seed=6)
    return folder


def fake_report(monkeypatch, calls: list) -> None:
    """evaluate.main stand-in: writes RUN/eval_copies.json as `pipelines.evaluate --copies` does."""
    def fake_main(argv):
        calls.append(argv)
        run = Path(argv[argv.index("--encoder") + 1])
        (run / REPORT_FILE).write_text(json.dumps({
            "images": 40, "edits": ["crop", "mirror_grey"],
            "encoder": {"recall_at_1": 0.9, "by_edit": {"crop": 1.0, "mirror_grey": 0.8}},
            "raw_pixels": {"recall_at_1": 0.6, "by_edit": {"crop": 0.7, "mirror_grey": 0.5}}}))
        return 0
    monkeypatch.setattr(evaluate, "main", fake_main)


def test_own_folder_is_never_written_and_reruns_embed_only_what_changed(photos, tmp_path, monkeypatch, caplog,
                                                                          capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    calls: list = []
    fake_report(monkeypatch, calls)
    args = ["--data", str(photos), "--minutes", "0.2", "--pretrain-args", PRETRAIN, "--no-serve"]
    before = snapshot(photos)
    caplog.set_level(logging.INFO)
    assert demo.main(args) == 0
    assert snapshot(photos) == before  # names, sizes, mtimes, modes: untouched, nothing added

    name = demo.collection_name(photos)
    assert name.startswith("My-Photos-")
    run, index = work / "runs" / name, work / "indexes" / name
    loaded = load_index(index)
    assert loaded.manifest.count == 24 + 8 and Path(loaded.manifest.data_root) == photos.resolve()
    clusters = json.loads((index / "clusters.json").read_text())
    assert sorted(clusters["assignments"]) == sorted(it.path for it in loaded.manifest.items)
    assert calls == [["--encoder", str(Path("runs") / name), "--copies", str(photos)]]
    out = capsys.readouterr().out
    assert "Quality report" in out and "mirror_grey" in out and "0.80" in out and "0.50" in out

    # the user adds 5 photos and deletes one: only the 5 are embedded, the clusters follow
    rng = __import__("numpy").random.default_rng(9)
    for i in range(5):
        draw_shape_image("cross", rng).save(photos / "2024 trip" / f"new_{i}.png")
    (photos / "ellipse_5_000.png").unlink()
    before = snapshot(photos)
    encoder_mtime = (run / "encoder.safetensors").stat().st_mtime_ns
    caplog.clear()
    assert demo.main(args) == 0
    assert snapshot(photos) == before
    assert (run / "encoder.safetensors").stat().st_mtime_ns == encoder_mtime  # reused, not retrained
    assert "embedded 5 images (5 new, 0 changed), reused 31, removed 1; 36 in the index" in caplog.text
    loaded = load_index(index)
    clusters = json.loads((index / "clusters.json").read_text())
    assert sorted(clusters["assignments"]) == sorted(it.path for it in loaded.manifest.items)
    assert "2024 trip/new_4.png" in clusters["assignments"] and "ellipse_5_000.png" not in clusters["assignments"]


def test_a_failing_quality_report_is_a_warning_not_an_error(photos, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)

    def refusing(argv):  # an evaluate that does not know --copies yet
        raise SystemExit(2)
    monkeypatch.setattr(evaluate, "main", refusing)
    caplog.set_level(logging.INFO)
    assert demo.main(["--data", str(photos), "--minutes", "0.2", "--pretrain-args", PRETRAIN, "--no-serve"]) == 0
    assert "quality report not available" in caplog.text


def test_run_or_index_inside_the_data_folder_is_refused(photos, monkeypatch, capsys):
    monkeypatch.chdir(photos)  # runs/ and indexes/ would be created inside the photos
    before = snapshot(photos)
    assert demo.main(["--data", str(photos), "--no-serve"]) == 2
    assert "only ever read" in capsys.readouterr().err
    assert demo.main(["--data", str(photos), "--run", "/tmp/elsewhere", "--index", str(photos / "idx"),
                      "--no-serve"]) == 2
    assert snapshot(photos) == before


def fake_package(root: Path) -> Path:
    """An unpacked wallpaper package: one picture at 3 resolutions, an SVG, a plain image, a doc PNG."""
    rng = __import__("numpy").random.default_rng(0)
    bg = root / "usr/share/backgrounds/sway"
    bg.mkdir(parents=True)
    art = draw_shape_image("ellipse", rng, 120)
    for w, h, tail in ((64, 48, ""), (120, 90, ""), (48, 64, "_Portrait")):
        art.resize((w, h)).save(bg / f"Wall_Blue_{w}x{h}{tail}.png")
    draw_shape_image("cross", rng, 80).convert("RGBA").save(bg / "other.webp")
    (bg / "vector.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    Image.new("RGB", (50, 50), (10, 20, 30)).save(bg / "plain.png")
    doc = root / "usr/share/doc/pkg"
    doc.mkdir(parents=True)
    draw_shape_image("triangle", rng).save(doc / "logo.png")
    return root


def test_sample_photos_dedupe_resolutions_and_say_what_is_missing(tmp_path, monkeypatch):
    def fetch(package, workdir):
        if package == "ukui-wallpapers":
            raise RuntimeError("E: Unable to locate package")
        return fake_package(workdir / "root")
    monkeypatch.setattr(sample_photos, "fetch_deb", fetch)
    dest = tmp_path / "photos"
    photos, missing = sample_photos.collect_sample_photos(dest)
    sway = sorted(p.name for p in photos if p.name.startswith("debian_sway-backgrounds_"))
    assert sway == ["debian_sway-backgrounds_Wall_Blue.jpg", "debian_sway-backgrounds_other.jpg"]
    with Image.open(dest / "debian_sway-backgrounds_Wall_Blue.jpg") as im:
        assert im.size == (120, 90) and im.mode == "RGB"  # the largest of the three, as RGB JPEG
    assert any("ukui-wallpapers" in m and "Unable to locate" in m for m in missing)
    assert any(p.name.startswith("skimage_") for p in photos) and any(p.name.startswith("sklearn_") for p in photos)
    for p in photos:
        with Image.open(p) as im:
            assert im.mode == "RGB" and im.format in ("JPEG", "PNG"), p
    assert not [p for p in dest.iterdir() if p not in photos]  # nothing else written there
    # a second run fetches nothing again that it already has
    monkeypatch.setattr(sample_photos, "fetch_deb", lambda package, workdir: pytest.fail(package)
                        if package != "ukui-wallpapers" else fetch(package, workdir))
    assert sample_photos.collect_sample_photos(dest)[0] == photos


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed (make test installs it)")
def test_sample_collection_demo(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sample_photos, "fetch_deb", lambda package, workdir: (_ for _ in ()).throw(
        RuntimeError("offline in this test")))
    caplog.set_level(logging.INFO)
    args = ["--fmnist-limit", "300", "--minutes", "0.2", "--pretrain-args", PRETRAIN, "--no-eval", "--no-serve"]
    assert demo.main(args) == 0
    data, index = tmp_path / "data" / "sample", tmp_path / "indexes" / "demo"
    assert len(list((data / "fashion-mnist").glob("*.png"))) == 300
    photos = list((data / "photos").iterdir())
    assert photos, "scikit-image / scikit-learn ship sample photos"
    assert "could not get Debian package gnome-backgrounds (offline in this test); going on" in caplog.text
    assert load_index(index).manifest.count == 300 + len(photos)
    assert (index / "clusters.json").is_file()


def test_a_grown_folder_is_noticed_and_refresh_warm_starts_then_re_embeds(photos, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    fake_report(monkeypatch, [])
    caplog.set_level(logging.INFO)
    args = ["--data", str(photos), "--minutes", "0.2", "--pretrain-args", PRETRAIN, "--no-serve"]
    assert demo.main(args) == 0
    run = tmp_path / "runs" / demo.collection_name(photos)
    assert "more than the" not in caplog.text
    old_sha = file_sha256(run / "encoder.safetensors")

    rng = __import__("numpy").random.default_rng(3)
    for i in range(16):  # 32 -> 48 images: +50%
        draw_shape_image("cross", rng).save(photos / "2024 trip" / f"more_{i}.png")
    before = snapshot(photos)
    caplog.clear()
    assert demo.main(args) == 0
    assert "48 images, 50% more than the 32 the encoder was trained on" in caplog.text and "--refresh" in caplog.text
    assert file_sha256(run / "encoder.safetensors") == old_sha  # only said, not done

    caplog.clear()
    assert demo.main([*args, "--refresh", "--refresh-minutes", "0.1"]) == 0
    assert snapshot(photos) == before
    assert file_sha256(run.with_name(run.name + ".prev") / "encoder.safetensors") == old_sha
    new_sha = file_sha256(run / "encoder.safetensors")
    assert new_sha != old_sha and not run.with_name(run.name + ".next").exists()
    assert json.loads((run / "summary.json").read_text())["images"] == 48
    assert "warm start from" in caplog.text and "more than the" not in caplog.text
    manifest = load_index(tmp_path / "indexes" / demo.collection_name(photos)).manifest
    assert manifest.count == 48 and manifest.encoder["sha256"] == new_sha  # every image embedded again


def test_the_terminal_report_says_how_many_photos_were_edited():
    report = {"images": 10300, "edited": 200, "edits": ["crop", "tone"],
              "encoder": {"recall_at_1": 0.625, "by_edit": {"crop": 0.25, "tone": 1.0}},
              "raw_pixels": {"recall_at_1": 0.5, "by_edit": {"crop": 0.0, "tone": 1.0}}}
    lines = demo.format_report(report).splitlines()
    assert "(200 of 10300 photos, each edited 2 ways)" in lines[0]
    assert lines[2].split() == ["all", "edits", "0.62", "0.50"] and lines[3].split() == ["crop", "0.25", "0.00"]
