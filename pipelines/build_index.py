"""Embed a folder of images with a pretrained encoder into a FAISS index folder.

    python -m pipelines.build_index --data DIR --encoder RUN_DIR --out INDEX_DIR [--update]
    python -m pipelines.build_index --data DIR --encoder RUN_DIR --out SHARDS_DIR --shard i/N   (then
    python -m pipelines.merge_shards --shards SHARDS_DIR --out INDEX_DIR [--on-disk])

Every readable image goes through the preprocessing recorded in RUN_DIR/config.json and
the frozen backbone (representation h, no projection head); DataLoader workers decode the
next batches while the main process runs the forward pass. The index type comes from the
collection size and --memory-budget-gb (`index.faiss_index.choose_index_key`) unless
--index-key is given. `--update` re-embeds only new and changed files, drops deleted ones
and keeps the ids of the rest. INDEX_DIR is replaced atomically (see `index.store`).

`--shard i/N` embeds only the i-th of N contiguous slices of the sorted file list and
writes SHARDS_DIR/shard-i-of-N (embeddings.npy, ids.npy, manifest.json; ids are positions
in the full sorted list, so they are unique across shards). Each process, machine or
`torchrun` rank runs one shard (`--shard env` reads RANK and WORLD_SIZE);
`pipelines.merge_shards` then builds one index from all N.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from encoders.decoded import load_decoded
from encoders.embed import Encoder, EncoderConfig
from encoders.files import crash_point, file_sha256
from encoders.imagefolder import ImageFiles, SkipReport, collate_skipping, default_workers, file_error, scan_images
from encoders.runtime import pick_device, pick_precision
from encoders.store import EncoderMismatch, check_same_encoder, encoder_record, load_encoder
from index.factory import IndexKeyError, default_search_params
from index.faiss_index import BudgetTooSmall, ReadOnlyIndex, build_index, choose_index_key, update_index
from index.store import MANIFEST, IndexLoadError, Item, LoadedIndex, Manifest, load_index, write_index_dir
from index.update_plan import Outcome, apply_plan, in_place, plan_update
from pipelines.cli import run_cli

log = logging.getLogger(__name__)


@dataclass
class BuildConfig:
    data: str = ""
    encoder: str = ""
    out: str = ""
    update: bool = False
    index_key: str | None = None  # None: choose_index_key(count, dim, memory budget)
    memory_budget_gb: float = 4.0
    batch_size: int = 256
    workers: int | None = None  # None: encoders.imagefolder.default_workers(beside_compute=True)
    device: str = "auto"
    precision: str = "fp32"
    progress: bool = True
    seed: int = 0
    shard: str | None = None  # "i/N": embed shard i of N into OUT/shard-i-of-N; "env": RANK/WORLD_SIZE


class NoIndexToUpdate(IndexLoadError):
    """An update asked of a folder that holds no index yet."""


class NoReadableImage(ValueError):
    """A data folder with no image that could be read."""


class HashingImageFiles(ImageFiles):
    """ImageFiles that also hashes each file's bytes in the worker: (i, image, UnreadableImage or None, sha256)."""

    def __getitem__(self, i: int):
        i, x, err = super().__getitem__(i)
        try:
            sha = file_sha256(self.files[i]) if err is None else ""
        except OSError as e:
            return i, torch.empty(0, dtype=torch.uint8), file_error(e, self.files[i]), ""
        return i, x, err, sha


def collate_hashed(batch):
    idx, images, bad = collate_skipping([(i, x, err) for i, x, err, _ in batch])
    return idx, images, bad, {i: sha for i, _, err, sha in batch if err is None}


def split_cpu(workers: int) -> int:
    """Torch threads for the forward pass beside `workers` decoding processes (no oversubscription:
    see `encoders.imagefolder.default_workers`)."""
    return max(1, (os.cpu_count() or 1) - workers)


def embed_files(files: list[Path], encoder: Encoder, cfg: BuildConfig, skips: SkipReport
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Files -> (ok mask (F,), float32 (F, D) embeddings, sha256 per file); failures go to `skips`."""
    enc, workers = encoder.cfg, default_workers(beside_compute=True) if cfg.workers is None else cfg.workers
    decoded = load_decoded(cfg.encoder, enc.image_size)  # what pretraining decoded is not decoded again
    loader = DataLoader(HashingImageFiles(files, enc.image_size, decoded), batch_size=cfg.batch_size, shuffle=False,
                        num_workers=workers, collate_fn=collate_hashed, prefetch_factor=4 if workers else None)
    ok = np.zeros(len(files), bool)
    emb = np.zeros((len(files), enc.dim), np.float32)  # (F, D)
    hashes = [""] * len(files)
    with tqdm(total=len(files), desc="embed", unit="img", disable=not cfg.progress) as bar:
        for idx, images, bad, shas in loader:
            if len(idx):
                emb[idx.numpy()] = encoder(images, cfg.precision).cpu().numpy()
                ok[idx.numpy()] = True
            for i, sha in shas.items():
                hashes[i] = sha
            for i, err in bad:
                skips.add(files[i], err.reason, err.detail)
            bar.update(len(idx) + len(bad))
            crash_point("embed:after_batch")
    return ok, emb, hashes


def same_content(path: Path, sha256: str) -> bool:
    """False also when the file cannot be read now: it is re-embedded, and that skips it with the reason."""
    try:
        return file_sha256(path) == sha256
    except OSError:
        return False


def scan_stats(root: Path, skips: SkipReport) -> dict[str, tuple[int, int]]:
    """Every usable image under `root` (sorted, relative POSIX path) -> (size, mtime_ns); the rest to `skips`."""
    stats = {}
    for f in scan_images(root, skips):
        try:
            st = f.stat()
        except OSError as e:  # vanished since the listing, symlink loop, ...
            err = file_error(e, f)
            skips.add(f, err.reason, err.detail)
            continue
        stats[f.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return stats


def parse_shard(spec: str) -> tuple[int, int]:
    """"i/N" (0 <= i < N), or "env": torch.distributed's RANK / WORLD_SIZE -> (i, N)."""
    if spec == "env":
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise ValueError("RANK and WORLD_SIZE are not set (not running under torchrun)")
        spec = f"{os.environ['RANK']}/{os.environ['WORLD_SIZE']}"
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise ValueError(f"{spec!r} is not i/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise ValueError(f"{spec!r}: need 0 <= i < N")
    return i, n


def shard_dir(shards: str | os.PathLike, i: int, n: int) -> Path:
    return Path(shards) / f"shard-{i:05d}-of-{n:05d}"


def run_shard(cfg: BuildConfig, encoder: Encoder, record: dict, root: Path,
              stats: dict[str, tuple[int, int]], skips: SkipReport) -> dict:
    """Embed shard i of N of the sorted files into OUT/shard-i-of-N (no index: merge_shards builds it)."""
    i, n = parse_shard(cfg.shard)
    rel_paths = list(stats)
    a, b = i * len(rel_paths) // n, (i + 1) * len(rel_paths) // n
    if i > 0:  # files skipped while scanning are counted once, in shard 0
        skips = SkipReport()
    ok, emb, hashes = embed_files([root / r for r in rel_paths[a:b]], encoder, cfg, skips)
    items = [Item(rel, *stats[rel], hashes[j], a + j) for j, rel in enumerate(rel_paths[a:b]) if ok[j]]
    ids = np.array([it.id for it in items], np.int64)  # (S,)
    manifest = Manifest(index_key="", dim=encoder.cfg.dim, count=len(items), data_root=str(root.resolve()),
                        encoder=record, items=items, next_id=len(rel_paths), skipped=skips.as_dict(),
                        build=asdict(cfg), layout={"shard": i, "shards": n})
    out = shard_dir(cfg.out, i, n)
    write_index_dir(out, manifest, ids, embeddings=np.ascontiguousarray(emb[ok]))
    counts = {"shard": f"{i}/{n}", "images": len(items), "skipped": skips.total}
    log.info("%s: %s; %s", out, ", ".join(f"{k} {v}" for k, v in counts.items()), skips.summary())
    return counts


def load_old_index(cfg: BuildConfig, record: dict, enc: EncoderConfig) -> LoadedIndex | None:
    """The index an update starts from (None for a fresh build), refused if another encoder made it
    or its lists are on disk (read-only)."""
    if not cfg.update:
        return None
    if not (Path(cfg.out) / MANIFEST).is_file():
        raise NoIndexToUpdate(f"{cfg.out} holds no index yet")
    old = load_index(cfg.out, use_gpu=False)
    check_same_encoder(old.manifest.encoder, old.manifest.dim, cfg.encoder, record["sha256"], enc)
    if old.manifest.layout.get("invlists") == "ondisk":
        raise ReadOnlyIndex(f"{cfg.out} keeps its inverted lists on disk, read-only: it cannot be updated in place")
    return old


def index_for(outcome: Outcome, embeddings: np.ndarray, old: LoadedIndex | None, key: str, seed: int
              ) -> tuple[object, dict]:
    """(index, its search params): the old index updated in place when it can be, else a new build."""
    ids = np.array([it.id for it in outcome.items], np.int64)  # (M,)
    if old is not None and in_place(old.manifest.index_key, key):
        new_rows = [r for r, (src, _) in enumerate(outcome.sources) if src == "new"]
        index = update_index(old.index, np.array(outcome.remove_ids, np.int64), embeddings[new_rows],
                             ids[new_rows])
        log.info("updated %s in place (%d removed, %d added)", key, len(outcome.remove_ids), len(new_rows))
        return index, old.manifest.search_params
    t = time.perf_counter()
    index = build_index(embeddings, ids, key, seed=seed)
    log.info("built %s over %d vectors in %.1fs", key, len(ids), time.perf_counter() - t)
    return index, default_search_params(key)


def start(cfg: BuildConfig) -> tuple:
    """Device, precision, CPU split and the encoder, once: (Encoder, its record)."""
    device = pick_device(cfg.device)
    cfg.precision = pick_precision(cfg.precision, device)
    if cfg.workers is None:
        cfg.workers = default_workers(beside_compute=True)
    if device.type == "cpu":
        torch.set_num_threads(split_cpu(cfg.workers))
    encoder = load_encoder(cfg.encoder, device)
    return encoder, encoder_record(cfg.encoder, encoder.cfg)


def run(cfg: BuildConfig) -> dict:
    """Build or update cfg.out (or embed one shard of it, cfg.shard); returns the counts it logs."""
    t0 = time.perf_counter()
    if cfg.shard:
        parse_shard(cfg.shard)  # fail before loading anything
    encoder, record = start(cfg)
    enc = encoder.cfg
    root, skips = Path(cfg.data), SkipReport()
    stats = scan_stats(root, skips)
    if cfg.shard:
        return run_shard(cfg, encoder, record, root, stats, skips)
    old = load_old_index(cfg, record, enc)
    plan = plan_update(old.manifest.items if old else None, old.manifest.next_id if old else 0, stats,
                       lambda rel, sha: same_content(root / rel, sha))
    log.info("%d images: %d to embed, %d unchanged, %d removed", len(stats), len(plan.embed),
             len(plan.reuse), len(plan.removed))
    t_embed = time.perf_counter()
    ok, new_emb, hashes = embed_files([root / r for r in plan.embed], encoder, cfg, skips)
    log.info("embedded %d images in %.1fs", int(ok.sum()), time.perf_counter() - t_embed)
    outcome = apply_plan(plan, stats, {rel: hashes[j] for j, rel in enumerate(plan.embed) if ok[j]})
    if not outcome.items:
        raise NoReadableImage(f"{root}: no readable image ({skips.summary()})")
    embeddings = np.stack([old.embeddings[r] if src == "old" else new_emb[r]
                           for src, r in outcome.sources]).astype(np.float32)  # (M, D)
    key = cfg.index_key or choose_index_key(len(outcome.items), enc.dim, cfg.memory_budget_gb * 1e9)
    index, params = index_for(outcome, embeddings, old, key, cfg.seed)
    manifest = Manifest(index_key=key, dim=enc.dim, count=len(outcome.items), data_root=str(root.resolve()),
                        encoder=record, items=outcome.items, search_params=params, next_id=outcome.next_id,
                        skipped=skips.as_dict(), build=asdict(cfg))
    write_index_dir(cfg.out, manifest, np.array([it.id for it in outcome.items], np.int64), index=index,
                    embeddings=embeddings)
    counts = {"images": len(outcome.items), "embedded": int(ok.sum()), **outcome.counts, "skipped": skips.total,
              "index_key": key, "seconds": round(time.perf_counter() - t0, 2)}
    log.info("%s: %s; %s", cfg.out, ", ".join(f"{k} {v}" for k, v in counts.items()), skips.summary())
    return counts

def parse_args(argv=None) -> BuildConfig:
    p = argparse.ArgumentParser(prog="python -m pipelines.build_index", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = BuildConfig()
    p.add_argument("--data", required=True, help="folder of images (searched recursively)")
    p.add_argument("--encoder", required=True, help="run folder from pipelines.pretrain")
    p.add_argument("--out", required=True, help="index folder to create or replace")
    p.add_argument("--update", action="store_true", help="re-embed only new/changed files of an existing index")
    p.add_argument("--index-key", default=None, help="FAISS index factory key (default: chosen from size and budget)")
    p.add_argument("--memory-budget-gb", type=float, default=d.memory_budget_gb)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores - 1)")
    p.add_argument("--device", default=d.device)
    p.add_argument("--precision", default=d.precision, help="fp32, bf16 or auto")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--shard", default=None, help="i/N: embed only shard i of N into OUT/shard-i-of-N, for "
                   "pipelines.merge_shards; 'env' reads torchrun's RANK/WORLD_SIZE")
    cfg = BuildConfig(**vars(p.parse_args(argv)))
    if cfg.shard and cfg.update:
        p.error("--shard and --update cannot be combined: re-embed the shard and merge again")
    return cfg


# What to do about a library error, in this CLI's flags (pipelines.cli.run_cli adds it to the error line).
FLAGS = {
    NoIndexToUpdate: "run without --update to build one",
    EncoderMismatch: "pass the --encoder the index was built with, or rebuild it without --update",
    ReadOnlyIndex: "re-embed the changed shards with --shard and run pipelines.merge_shards again",
    NoReadableImage: "check --data",
    IndexKeyError: "choose another --index-key",
    BudgetTooSmall: "raise --memory-budget-gb",
    IndexLoadError: "rebuild --out without --update, or choose another --out",
}


def main(argv=None) -> int:
    cfg = parse_args(argv)
    if cfg.shard:
        try:
            parse_shard(cfg.shard)
        except ValueError as e:
            print(f"error: --shard {cfg.shard}: {e}", file=sys.stderr)
            return 2
    return run_cli(lambda: run(cfg), flags=FLAGS)  # IndexLoadError, EncoderLoadError, bad arguments


if __name__ == "__main__":
    sys.exit(main())
