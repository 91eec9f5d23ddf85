"""Find exact and near duplicates in an index, and (only when asked) move the extra copies out.

    python -m pipelines.duplicates --index INDEX_DIR [--threshold T] [--hamming H] [--detector combined]
                                   [--json] [--export duplicates.csv]
    python -m pipelines.duplicates --index INDEX_DIR --move-extras TARGET   # then INDEX_DIR is updated
    python -m pipelines.duplicates --undo TARGET/moves-....json              # every moved file back

Exact groups come from the sha256 in the manifest. A near pair (default detector `combined`)
has a perceptual-hash distance <= H (64-bit DCT pHash, also against the mirror image and with
plain borders trimmed; hashes cached in INDEX_DIR/phash.npz) or an embedding cosine >= T, and
stands apart from both images' other neighbours (`index.crowding.Crowding`: among look-alikes
a close hash or cosine is no evidence). T and the margins are calibrated on this collection
(T unless given): a sample of its photos is edited in memory the ways people make copies, and T
is set between the scores of those copies and of crops of different parts of one photo
(`index.calibration`); the values, the reason and what they find go to the output. Groups are
connected components of the pairs, each with a suggested keeper (most pixels, then largest
file, then newest). Writes INDEX_DIR/duplicates.json, with
`--export` a CSV of the groups.

`--move-extras TARGET` moves every image of each group but its keeper to TARGET/<same
relative path> (refused inside the data folder, or if any destination exists), listing them
in TARGET/moves-<time>.json before each move, then updates the index (`build_index
--update`). `--undo MANIFEST` moves them back, byte-identical, and updates the index again.
Nothing is ever deleted, and nothing moves without --move-extras.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.copies import pick_sample
from encoders.embed import embed_images
from encoders.files import atomic_write_json
from encoders.store import EncoderLoadError, load_recorded_encoder
from index.calibration import Calibration, calibrate, edited_pairs
from index.crowding import Crowding
from index.duplicates import DUPLICATES_FILE as DUPLICATES
from index.duplicates import TooManyPairs, detect_duplicates
from index.exports import duplicates_csv, named_duplicates, refuse_inside, save_csv
from index.moves import MoveRefused, move_files, plan_moves, read_moves, undo_moves
from index.phash import HASH_KINDS, HashCache, load_or_compute
from index.store import IndexLoadError, LoadedIndex, load_index
from pipelines.cli import run_cli

log = logging.getLogger(__name__)
DETECTORS = {  # detector -> (uses the encoder, pHash kinds compared)
    "combined": (True, HASH_KINDS),
    "encoder": (True, ()),
    "phash": (False, ("plain",)),  # imagededup's PHash: plain hashes only
}


@dataclass
class DuplicatesConfig:
    index: str = ""
    detector: str = "combined"
    threshold: float | None = None  # cosine; None: calibrated on the collection
    hamming: int = 10  # pHash distance; imagededup's default for PHash
    encoder: str | None = None  # run folder, when the index's recorded path moved (calibration needs it)
    calibration_sample: int = 200  # photos edited for calibration
    target_recall: float = 0.97  # of the calibration's edited copies
    max_distinct: float = 0.01  # of its distinct pairs (crops of different parts of one photo)
    seed: int = 0
    json: bool = False
    export: str | None = None  # CSV path
    move_extras: str | None = None  # TARGET folder
    undo: str | None = None  # move manifest
    update_index: bool = True  # after a move or undo


def calibration_key(loaded: LoadedIndex, cfg: DuplicatesConfig) -> dict:
    """What a saved calibration depends on: the index build, the encoder and the settings."""
    return {"created": loaded.manifest.created, "count": loaded.manifest.count,
            "encoder": loaded.manifest.encoder.get("sha256"), "detector": cfg.detector, "hamming": cfg.hamming,
            "sample": cfg.calibration_sample, "target_recall": cfg.target_recall,
            "max_distinct": cfg.max_distinct, "seed": cfg.seed}


def saved_calibration(index_dir: Path, key: dict) -> dict | None:
    """The calibration in INDEX_DIR/duplicates.json if it was made with `key`, else None."""
    try:
        saved = json.loads((index_dir / DUPLICATES).read_text()).get("calibration")
    except (OSError, ValueError, AttributeError):
        return None
    return saved if isinstance(saved, dict) and saved.get("settings") == key else None


def run_calibration(loaded: LoadedIndex, cfg: DuplicatesConfig, files: list[Path], phashes: np.ndarray) -> dict:
    """The calibrated threshold for this index (reused from duplicates.json when nothing changed)."""
    key = calibration_key(loaded, cfg)
    saved = saved_calibration(loaded.directory, key)
    if saved is not None:
        log.info("calibration reused from %s", loaded.directory / DUPLICATES)
        return saved
    t0 = time.perf_counter()
    encoder = load_recorded_encoder(loaded.manifest.encoder, loaded.manifest.dim, "cpu", cfg.encoder)
    rows = pick_sample(len(files), cfg.calibration_sample, cfg.seed)
    ev = edited_pairs(files, rows, loaded.embeddings, phashes, lambda imgs: embed_images(encoder, imgs),
                      seed=cfg.seed)
    uses_hash = bool(DETECTORS[cfg.detector][1])
    cal: Calibration = calibrate(ev, cfg.hamming if uses_hash else None, DETECTORS[cfg.detector][1],
                                 cfg.target_recall, cfg.max_distinct)
    cal.settings = key
    log.info("calibrated in %.1fs on %d photos: %s (%s)", time.perf_counter() - t0, ev.photos, cal.sentence, cal.how)
    return cal.to_json()


def detect(loaded: LoadedIndex, cfg: DuplicatesConfig) -> tuple[dict, tuple[list[list[int]], list[int]]]:
    """Duplicates of the index as duplicates.json holds them (see the module docstring), and the
    groups to act on as rows with their keepers' rows."""
    items = loaded.manifest.items
    paths, hashes = [it.path for it in items], [it.sha256 for it in items]
    uses_encoder, kinds = DETECTORS[cfg.detector]
    calibration, threshold, floor = None, None, -1.0
    if uses_encoder and (cfg.threshold is None or kinds):  # combined: the hash's cosine floor is calibrated too
        t0 = time.perf_counter()
        ok, phashes, _ = load_or_compute(loaded.directory, [loaded.absolute(p) for p in paths], hashes)
        log.info("perceptual hashes of %d images in %.1fs (%d unreadable)", len(items), time.perf_counter() - t0,
                 int((~ok).sum()))
        calibration = run_calibration(loaded, cfg, [loaded.absolute(p) for p in paths], phashes)
        threshold, floor, reason = calibration["threshold"], calibration["floor"], calibration["sentence"]
    if uses_encoder and cfg.threshold is not None:
        threshold, floor = cfg.threshold, min(floor, cfg.threshold)
        reason = f"threshold {cfg.threshold:.3f}: given with --threshold" + (
            "; pairs count only where they stand apart, as calibrated" if calibration and calibration.get("crowding")
            else "")
    if not uses_encoder:
        reason = f"pHash distance <= {cfg.hamming} (no encoder)"
    crowding = calibration.get("crowding") if calibration else None
    found = detect_duplicates(loaded, threshold, cfg.hamming if kinds else None, floor, kinds or ("plain",),
                              crowding=Crowding(**crowding) if crowding else None)
    named = named_duplicates(paths, hashes, found)
    k = found["keepers"]
    groups = [{"paths": [paths[r] for r in g], "keeper": paths[keep]}
              for g, keep in zip(k["groups"], k["group_keepers"])]
    return {"threshold": threshold, "hamming": cfg.hamming if kinds else None, "hash_floor": floor,
            "detector": cfg.detector, "reason": reason, "calibration": calibration, "crowding": crowding,
            "crowded": found["crowded"], "exact": named["exact"],
            "near": named["near"], "groups": groups, "index_created": loaded.manifest.created}, \
        (k["groups"], k["group_keepers"])


def update_index(index_dir: str | Path, encoder: str | None, cache: HashCache) -> None:
    """`build_index --update` of the index after files moved, keeping the pHash cache."""
    from pipelines import build_index

    loaded = load_index(index_dir, use_gpu=False)
    m = loaded.manifest
    build_index.run(build_index.BuildConfig(data=m.data_root, encoder=encoder or m.encoder["path"],
                                            out=str(index_dir), update=True, progress=False, workers=0))
    cache.write(index_dir)


def move_extras(loaded: LoadedIndex, groups: list[list[int]], keepers: list[int], cfg: DuplicatesConfig) -> dict:
    """Move every non-keeper of each group into cfg.move_extras (see `index.moves`); update the index."""
    plan = plan_moves(loaded.manifest.data_root, cfg.move_extras, loaded.manifest.items, groups, keepers)
    manifest = Path(cfg.move_extras) / f"moves-{time.strftime('%Y%m%dT%H%M%S')}.json"
    cache = HashCache.read(loaded.directory)
    moved = move_files(plan, loaded.manifest.data_root, cfg.move_extras, manifest, loaded.directory)
    log.info("moved %d files into %s; listed in %s (undo: --undo %s)", moved, cfg.move_extras, manifest, manifest)
    if cfg.update_index and moved:
        update_index(loaded.directory, cfg.encoder, cache)
    return {"moved": moved, "manifest": str(manifest)}


def run_undo(cfg: DuplicatesConfig) -> dict:
    record, _ = read_moves(cfg.undo)
    counts = undo_moves(cfg.undo)
    for p in counts["problems"]:
        log.warning("%s", p)
    log.info("restored %d files, %d already in place", counts["restored"], counts["in_place"])
    index_dir = record.get("index")
    if cfg.update_index and index_dir and counts["restored"]:
        update_index(index_dir, cfg.encoder, HashCache.read(index_dir))
    return {"undo": counts}


def run(cfg: DuplicatesConfig) -> dict:
    if cfg.undo:
        return run_undo(cfg)
    loaded = load_index(cfg.index, use_gpu=False)
    refuse_inside(cfg.export, loaded.manifest.data_root, "--export")
    result, (groups, keepers) = detect(loaded, cfg)
    atomic_write_json(Path(cfg.index) / DUPLICATES, result)
    if cfg.export:
        save_csv(cfg.export, duplicates_csv({"exact": result["exact"], "near": result["near"]}))
        log.info("wrote %s", cfg.export)
    log.info("%d exact-duplicate groups, %d near-duplicate groups (%s); wrote %s", len(result["exact"]),
             len(result["near"]), result["reason"], Path(cfg.index) / DUPLICATES)
    if cfg.move_extras:
        result["moves"] = move_extras(loaded, groups, keepers, cfg)
    return result


def parse_args(argv=None) -> DuplicatesConfig:
    d = DuplicatesConfig()
    p = argparse.ArgumentParser(prog="python -m pipelines.duplicates", description=__doc__.split("\n\n")[0])
    p.add_argument("--index", help="index folder (not needed with --undo)")
    p.add_argument("--detector", choices=list(DETECTORS), default=d.detector,
                   help="combined: pHash or embedding; encoder: embedding only; phash: plain pHash only")
    p.add_argument("--threshold", type=float, default=None, help="cosine similarity (default: calibrated)")
    p.add_argument("--hamming", type=int, default=d.hamming, help="largest pHash distance of a pair (0-64)")
    p.add_argument("--encoder", default=None, help="the index's encoder run folder, if it moved")
    p.add_argument("--calibration-sample", type=int, default=d.calibration_sample,
                   help="photos edited in memory to calibrate the threshold")
    p.add_argument("--target-recall", type=float, default=d.target_recall)
    p.add_argument("--max-distinct", type=float, default=d.max_distinct)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--json", action="store_true")
    p.add_argument("--export", default=None, metavar="CSV", help="also write the groups to this CSV file")
    p.add_argument("--move-extras", default=None, metavar="TARGET",
                   help="move all but the keeper of each group into this folder (outside the data folder)")
    p.add_argument("--undo", default=None, metavar="MANIFEST", help="move the files a --move-extras run moved back")
    p.add_argument("--no-update", dest="update_index", action="store_false",
                   help="do not update the index after --move-extras / --undo")
    args = p.parse_args(argv)
    if not args.undo and not args.index:
        p.error("--index is required (except with --undo)")
    if not 0 <= args.hamming <= 64:
        p.error(f"--hamming {args.hamming}: a 64-bit hash has distances 0..64")
    return DuplicatesConfig(**vars(args))


FLAGS = {
    TooManyPairs: "raise --threshold",
    EncoderLoadError: "give the encoder's run folder with --encoder (calibration needs it), or use --detector phash",
    MoveRefused: "nothing was moved",
    IndexLoadError: "check --index",
}


def main(argv=None) -> int:
    cfg = parse_args(argv)
    return run_cli(lambda: print_result(run(cfg), cfg.json), flags=FLAGS)


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=1))
        return
    if "undo" in result:
        u = result["undo"]
        print(f"restored {u['restored']} files ({u['in_place']} were in place)")
        for p in u["problems"]:
            print(f"not restored: {p}")
        return
    for g in result["exact"]:
        print("exact: " + "  ".join(g["paths"]) + f"   (keep {g['keeper']})")
    for g in result["near"]:
        print("near:  " + "  ".join(f"{p['a']} ~ {p['b']} ({p['score']:.3f}"
                                    + (f", pHash {p['hamming']}" if "hamming" in p else "") + ")" for p in g["pairs"])
              + f"   (keep {g['keeper']})")
    print(result["reason"])
    if result.get("calibration"):
        print(f"  chosen as {result['calibration']['how']}")
    if result.get("crowding"):
        c = result["crowded"]
        print(f"  left out where look-alikes crowd: {c['phash']:,} pHash pairs, {c['cosine']:,} cosine pairs")
    if "moves" in result:
        m = result["moves"]
        print(f"moved {m['moved']} files; undo with: python -m pipelines.duplicates --undo {m['manifest']}")


if __name__ == "__main__":
    sys.exit(main())
