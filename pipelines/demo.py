"""One command from a folder of photos to the search page: pretrain, index, cluster, report, serve.

    python -m pipelines.demo --data ~/Photos      # your own folder (only ever read)
    python -m pipelines.demo                      # the sample collection (what `make demo` runs)

1. the images: `--data DIR`, or else the sample collection, built in its own folder
   (data/sample): the Fashion-MNIST test images as an unlabeled PNG folder plus real photos
   (`pipelines.sample_photos`: scikit-image, scikit-learn, Debian wallpaper packages);
2. pretrains an encoder with pretrain's automatic defaults within `--minutes` (skipped when
   the run folder already has one; it says when the folder has grown by half since, and
   `--refresh` then trains that encoder further on the whole folder for `--refresh-minutes`);
3. embeds the collection into a FAISS index (`--update` when it exists: only new and
   changed files are embedded, deleted ones removed) and clusters it;
4. prints the label-free quality report (`pipelines.evaluate --copies`: how often the
   original of an edited photo is found first, encoder vs raw pixels);
5. serves the search page (`streamlit run app.py`) on 127.0.0.1.

Run and index folders default to runs/NAME and indexes/NAME under the current folder,
NAME derived from DIR (its name + a hash of its full path); nothing is written inside DIR.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from encoders.copies import read_report, report_rows
from encoders.files import file_sha256
from encoders.store import ENCODER_FILE
from index.store import MANIFEST
from pipelines import build_index, cluster, evaluate, export_fashion_mnist, pretrain
from pipelines.cli import run_cli, setup_logging
from pipelines.sample_photos import collect_sample_photos
from pipelines.serve import serve

log = logging.getLogger("pipelines.demo")

SAMPLE = Path("data/sample")
GROWN = 0.5  # the demo suggests --refresh once the folder holds this share more images than the encoder saw


@dataclass
class DemoConfig:
    data: str | None = None  # None: the sample collection
    run: str | None = None  # default runs/NAME
    index: str | None = None  # default indexes/NAME
    minutes: float = 4.0  # pretraining budget
    refresh: bool = False  # warm-start the existing encoder on the whole folder, then re-embed
    refresh_minutes: float = 2.0
    pretrain_args: str = ""  # extra pretrain flags, e.g. "--backbone smallcnn"; the rest are pretrain's auto
    fmnist_limit: int | None = None
    no_eval: bool = False
    no_serve: bool = False
    port: int = 8501


def collection_name(data: Path) -> str:
    """runs/ and indexes/ subfolder name for a data folder: readable and unique per full path."""
    resolved = data.resolve()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", resolved.name).strip("-.") or "photos"
    return f"{slug}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"


def is_inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def build_sample_collection(out: Path, fmnist_limit: int | None = None) -> None:
    """Fashion-MNIST test images + real photos, in `out` (the sample collection's own folder)."""
    try:
        n = export_fashion_mnist.export("test", out / "fashion-mnist", limit=fmnist_limit)
        log.info("sample collection: %d Fashion-MNIST test images", n)
    except FileNotFoundError as e:
        log.warning("Fashion-MNIST left out of the sample collection: %s", e)
    photos, missing = collect_sample_photos(out / "photos")
    for note in missing:
        log.warning("sample collection: could not get %s; going on without it", note)
    log.info("sample collection: %d real photos", len(photos))


def plan_folders(cfg: DemoConfig) -> tuple[Path, Path, Path]:
    """(data, run, index) folders; raises ValueError if run or index would land inside the data."""
    if cfg.data is None:
        data, name = SAMPLE, "demo"
    else:
        data = Path(cfg.data).expanduser()
        if not data.is_dir():
            raise ValueError(f"--data {data}: not a folder")
        name = collection_name(data)
    run = Path(cfg.run) if cfg.run else Path("runs") / name
    index = Path(cfg.index) if cfg.index else Path("indexes") / name
    if cfg.data is not None:
        for what, path in (("run", run), ("index", index)):
            if is_inside(path, data):
                raise ValueError(f"the {what} folder {path} would be inside the data folder {data}, which is only "
                                 f"ever read; pass --{what} somewhere else or start from another folder")
    return data, run, index


def pretrain_encoder(cfg: DemoConfig, data: Path, run: Path) -> None:
    if (run / ENCODER_FILE).is_file():
        log.info("reusing the trained encoder in %s (delete that folder to retrain)", run)
        return
    argv = ["--data", str(data), "--out", str(run), "--minutes", str(cfg.minutes), "--resume",
            *shlex.split(cfg.pretrain_args)]
    log.info("pretraining: python -m pipelines.pretrain %s", shlex.join(argv))
    if pretrain.main(argv):
        raise ValueError(f"pretraining failed (see above); the run folder is {run}")


def trained_on(run: Path) -> int | None:
    """How many images the run's encoder was trained on (its summary.json), or None if unknown."""
    try:
        n = json.loads((run / "summary.json").read_text())["images"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return n if isinstance(n, int) and n > 0 else None


def growth_note(run: Path, images: int, data: Path) -> str | None:
    """A line saying the folder has outgrown the encoder, or None."""
    seen = trained_on(run)
    if seen is None or images < seen * (1 + GROWN):
        return None
    return (f"the folder now holds {images} images, {images / seen - 1:.0%} more than the {seen} the encoder was "
            f"trained on: refresh it with `python -m pipelines.demo --data {shlex.quote(str(data))} --refresh` "
            f"(trains it further on the whole folder, then embeds every image again)")


def refresh_encoder(cfg: DemoConfig, data: Path, run: Path) -> None:
    """Warm-start `run`'s encoder on the whole folder in RUN.next, then swap it in (RUN.prev keeps the
    old one); `run` stays usable if this is interrupted, and a rerun resumes RUN.next."""
    nxt, prev = run.with_name(run.name + ".next"), run.with_name(run.name + ".prev")
    argv = ["--data", str(data), "--out", str(nxt), "--init-from", str(run), "--minutes", str(cfg.refresh_minutes),
            "--resume", *shlex.split(cfg.pretrain_args)]
    log.info("refreshing the encoder: python -m pipelines.pretrain %s", shlex.join(argv))
    if pretrain.main(argv):
        raise ValueError(f"refreshing the encoder failed (see above); {run} is unchanged")
    shutil.rmtree(prev, ignore_errors=True)
    run.rename(prev)
    nxt.rename(run)
    log.info("refreshed encoder in %s (the previous one is in %s)", run, prev)


def finish_swap(run: Path) -> None:
    """Complete a refresh interrupted between its two renames (RUN gone, RUN.next finished)."""
    nxt = run.with_name(run.name + ".next")
    if not run.exists() and (nxt / ENCODER_FILE).is_file():
        nxt.rename(run)


def index_collection(data: Path, run: Path, index: Path) -> dict:
    """Build the index, or update it when it exists and was built with this encoder."""
    update = (index / MANIFEST).is_file()
    if update:
        try:
            recorded = json.loads((index / MANIFEST).read_text())["encoder"]["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            recorded = None
        if recorded != file_sha256(run / ENCODER_FILE):
            log.info("%s was built with another encoder: re-embedding everything", index)
            update = False
    counts = build_index.run(build_index.parse_args(
        ["--data", str(data), "--encoder", str(run), "--out", str(index), *(["--update"] if update else [])]))
    log.info("index %s: embedded %d images (%d new, %d changed), reused %d, removed %d; %d in the index",
             index, counts["embedded"], counts["added"], counts["changed"], counts["unchanged"], counts["removed"],
             counts["images"])
    return counts


def copies_report(run: Path, data: Path) -> dict | None:
    """The label-free quality report (`pipelines.evaluate --copies`), or None with a warning if it failed."""
    try:
        rc = evaluate.main(["--encoder", str(run), "--copies", str(data)])
    except SystemExit as e:  # argparse: an evaluate without --copies
        rc = e.code
    except Exception as e:
        log.warning("quality report failed: %s: %s", type(e).__name__, e)
        return None
    report = None if rc else read_report(run)
    if report is None:
        log.warning("quality report not available (pipelines.evaluate --copies exited %s, or its file is "
                    "unreadable); going on", rc)
    return report


def format_report(r: dict) -> str:
    """eval_copies.json -> a few lines for the terminal."""
    lines = [f"Quality report (no labels): the original of an edited photo is found first "
             f"({r.get('edited', r.get('images', '?'))} of {r.get('images', '?')} photos, each edited "
             f"{len(r.get('edits', []))} ways)",
             f"  {'':22s} {'encoder':>8s} {'raw pixels':>11s}"]
    for name, vals in report_rows(r).items():
        enc, raw = (float("nan") if v is None else v for v in vals)
        lines.append(f"  {name:22s} {enc:8.2f} {raw:11.2f}")
    return "\n".join(lines)


def run(cfg: DemoConfig) -> tuple[Path, Path, Path]:
    data, run_dir, index = plan_folders(cfg)
    if cfg.data is None:
        build_sample_collection(data, cfg.fmnist_limit)
    finish_swap(run_dir)
    if cfg.refresh and (run_dir / ENCODER_FILE).is_file():
        refresh_encoder(cfg, data, run_dir)
    pretrain_encoder(cfg, data, run_dir)
    counts = index_collection(data, run_dir, index)
    note = growth_note(run_dir, counts["images"], data if cfg.data is not None else SAMPLE)
    if note:
        log.warning(note)
    if cluster.main(["--index", str(index)]):
        raise ValueError(f"clustering {index} failed (see above)")
    if not cfg.no_eval:
        report = copies_report(run_dir, data)
        if report is not None:
            print("\n" + format_report(report), flush=True)
    print(f"\nencoder: {run_dir / ENCODER_FILE}  loss curve: {run_dir / 'loss.png'}  index: {index}", flush=True)
    return data, run_dir, index


def parse_args(argv=None) -> DemoConfig:
    p = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__.split("\n\n")[0])
    d = DemoConfig()
    p.add_argument("--data", default=None, help="your folder of photos (only read); default: the sample collection")
    p.add_argument("--run", default=None, help="run folder (default runs/NAME, NAME derived from --data)")
    p.add_argument("--index", default=None, help="index folder (default indexes/NAME)")
    p.add_argument("--minutes", type=float, default=d.minutes, help="pretraining budget")
    p.add_argument("--refresh", action="store_true",
                   help="train the run's existing encoder further on the whole folder (after it grew), then re-embed")
    p.add_argument("--refresh-minutes", type=float, default=d.refresh_minutes, help="budget of --refresh")
    p.add_argument("--pretrain-args", default=d.pretrain_args,
                   help="extra flags for pipelines.pretrain, e.g. \"--backbone smallcnn --image-size 32\"")
    p.add_argument("--fmnist-limit", type=int, default=None, help="sample collection: only the first N test images")
    p.add_argument("--no-eval", action="store_true", help="skip the quality report")
    p.add_argument("--no-serve", action="store_true", help="stop after the pipelines; don't start the page")
    p.add_argument("--port", type=int, default=d.port)
    return DemoConfig(**vars(p.parse_args(argv)))


def main(argv=None) -> int:
    setup_logging()
    cfg = parse_args(argv)
    done: list[Path] = []
    rc = run_cli(lambda: done.extend(run(cfg)))
    if rc or cfg.no_serve:
        return rc
    return serve(str(done[2]), cfg.port)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
