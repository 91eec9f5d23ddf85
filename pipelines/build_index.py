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

from encoders.embed import embed_batch
from encoders.imagefolder import ImageFiles, SkipReport, collate_skipping, file_error, scan_images
from encoders.runtime import pick_device, pick_precision
from encoders.store import (CONFIG_FILE, ENCODER_FILE, EncoderConfig, changed_preprocessing, crash_point, file_sha256,
                            load_encoder)
from index.faiss_index import build_index, choose_index_key, default_search_params, supports_remove, update_index
from index.store import MANIFEST, IndexLoadError, Item, LoadedIndex, Manifest, load_index, write_index_dir
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
    workers: int | None = None  # None: cores - 1 (at least 1); the forward pass gets the rest
    device: str = "auto"
    precision: str = "fp32"
    progress: bool = True
    seed: int = 0
    shard: str | None = None  # "i/N": embed shard i of N into OUT/shard-i-of-N; "env": RANK/WORLD_SIZE


class EncoderMismatch(IndexLoadError):
    """The index was built with another encoder than the one given."""


def encoder_record(run_dir: str, cfg: EncoderConfig) -> dict:
    return {"path": str(Path(run_dir).resolve()), "sha256": file_sha256(Path(run_dir) / ENCODER_FILE),
            "config": asdict(cfg)}


def check_same_encoder(manifest: Manifest, record: dict, enc: EncoderConfig, index_dir) -> None:
    """--update adds vectors to an index: refuse an encoder (weights, dim or preprocessing)
    other than the one its vectors came from."""
    if manifest.encoder.get("sha256") != record["sha256"]:
        raise EncoderMismatch(
            f"{index_dir} was built with encoder {manifest.encoder.get('path')} (sha256 "
            f"{str(manifest.encoder.get('sha256'))[:12]}), not {record['path']} ({record['sha256'][:12]}); "
            f"pass the original --encoder, or rebuild without --update")
    if record["config"]["feat_dim"] != manifest.dim:
        raise EncoderMismatch(f"{index_dir} has dim {manifest.dim}, the encoder gives {record['config']['feat_dim']}; "
                              f"rebuild without --update")
    changed = changed_preprocessing(manifest.encoder, enc)
    if changed:
        raise EncoderMismatch(f"{index_dir} was built with this encoder's weights but other preprocessing "
                              f"({', '.join(changed)}); restore its {CONFIG_FILE}, or rebuild without --update")


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


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1) - 1)


def split_cpu(workers: int) -> int:
    """Torch threads for the forward pass beside `workers` decoding processes (no oversubscription:
    on a busy 2-core machine 2 threads + 2 workers embed at 38 img/s, 1 + 1 at 57, bench/embed_throughput.py)."""
    return max(1, (os.cpu_count() or 1) - workers)


def embed_files(files: list[Path], backbone, enc: EncoderConfig, cfg: BuildConfig, skips: SkipReport
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Files -> (ok mask (F,), float32 (F, D) embeddings, sha256 per file); failures go to `skips`."""
    workers = default_workers() if cfg.workers is None else cfg.workers
    loader = DataLoader(HashingImageFiles(files, enc.image_size), batch_size=cfg.batch_size, shuffle=False,
                        num_workers=workers, collate_fn=collate_hashed, prefetch_factor=4 if workers else None)
    ok = np.zeros(len(files), bool)
    emb = np.zeros((len(files), enc.feat_dim), np.float32)  # (F, D)
    hashes = [""] * len(files)
    with tqdm(total=len(files), desc="embed", unit="img", disable=not cfg.progress) as bar:
        for idx, images, bad, shas in loader:
            if len(idx):
                emb[idx.numpy()] = embed_batch(backbone, images, enc, cfg.precision).cpu().numpy()
                ok[idx.numpy()] = True
            for i, sha in shas.items():
                hashes[i] = sha
            for i, err in bad:
                skips.add(files[i], err.reason, err.detail)
            bar.update(len(idx) + len(bad))
            crash_point("embed:after_batch")
    return ok, emb, hashes


@dataclass
class Plan:
    """What an (update) build does with each current file."""

    reuse: dict[str, tuple[int, Item]]  # rel path -> (old row, item with current stat)
    embed: list[str]  # rel paths to embed (new or changed)
    changed: set[str]
    removed: list[str]


def same_content(path: Path, sha256: str) -> bool:
    """False also when the file cannot be read now: it is re-embedded, and that skips it with the reason."""
    try:
        return file_sha256(path) == sha256
    except OSError:
        return False


def plan_update(rel_paths: list[str], stats: dict[str, os.stat_result], root: Path, old: LoadedIndex | None) -> Plan:
    """Unchanged (same size and mtime, or same content hash) files are reused, never re-embedded."""
    old_rows = {it.path: (r, it) for r, it in enumerate(old.manifest.items)} if old else {}
    reuse, embed, changed = {}, [], set()
    for rel in rel_paths:
        st = stats[rel]
        if rel not in old_rows:
            embed.append(rel)
            continue
        row, it = old_rows[rel]
        same_stat = it.size == st.st_size and it.mtime_ns == st.st_mtime_ns
        if same_stat or (it.size == st.st_size and same_content(root / rel, it.sha256)):
            reuse[rel] = (row, Item(rel, st.st_size, st.st_mtime_ns, it.sha256, it.id))
        else:
            embed.append(rel)
            changed.add(rel)
    present = set(rel_paths)
    removed = [p for p in old_rows if p not in present]
    return Plan(reuse, embed, changed, removed)


def parse_shard(spec: str) -> tuple[int, int]:
    """"i/N" (0 <= i < N), or "env": torch.distributed's RANK / WORLD_SIZE -> (i, N)."""
    if spec == "env":
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise ValueError("--shard env: RANK and WORLD_SIZE are not set (run under torchrun, or pass --shard i/N)")
        spec = f"{os.environ['RANK']}/{os.environ['WORLD_SIZE']}"
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec}: expected i/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {spec}: need 0 <= i < N")
    return i, n


def shard_dir(shards: str | os.PathLike, i: int, n: int) -> Path:
    return Path(shards) / f"shard-{i:05d}-of-{n:05d}"


def run_shard(cfg: BuildConfig, backbone, enc: EncoderConfig, record: dict, root: Path, rel_paths: list[str],
              stats: dict, skips: SkipReport) -> dict:
    """Embed shard i of N of the sorted `rel_paths` into OUT/shard-i-of-N (no index: merge_shards builds it)."""
    i, n = parse_shard(cfg.shard)
    a, b = i * len(rel_paths) // n, (i + 1) * len(rel_paths) // n
    if i > 0:  # files skipped while scanning are counted once, in shard 0
        skips = SkipReport()
    ok, emb, hashes = embed_files([root / r for r in rel_paths[a:b]], backbone, enc, cfg, skips)
    items = [Item(rel, stats[rel].st_size, stats[rel].st_mtime_ns, hashes[j], a + j)
             for j, rel in enumerate(rel_paths[a:b]) if ok[j]]
    ids = np.array([it.id for it in items], np.int64)  # (S,)
    manifest = Manifest(index_key="", dim=enc.feat_dim, count=len(items), data_root=str(root.resolve()),
                        encoder=record, items=items, next_id=len(rel_paths), skipped=skips.as_dict(),
                        build=asdict(cfg), layout={"shard": i, "shards": n})
    out = shard_dir(cfg.out, i, n)
    write_index_dir(out, None, np.ascontiguousarray(emb[ok]), ids, manifest)
    counts = {"shard": f"{i}/{n}", "images": len(items), "skipped": skips.total}
    log.info("%s: %s; %s", out, ", ".join(f"{k} {v}" for k, v in counts.items()), skips.summary())
    return counts


def run(cfg: BuildConfig) -> dict:
    """Build or update cfg.out (or embed one shard of it, cfg.shard); returns the counts it logs."""
    t0 = time.perf_counter()
    if cfg.shard and cfg.update:
        raise ValueError("--shard and --update cannot be combined: re-embed the shard and merge again")
    if cfg.shard:
        parse_shard(cfg.shard)  # fail before loading anything
    device = pick_device(cfg.device)
    cfg.precision = pick_precision(cfg.precision, device)
    if cfg.workers is None:
        cfg.workers = default_workers()
    if device.type == "cpu":
        torch.set_num_threads(split_cpu(cfg.workers))
    backbone, enc = load_encoder(cfg.encoder, device)
    record = encoder_record(cfg.encoder, enc)
    root = Path(cfg.data)
    skips = SkipReport()
    files = scan_images(root, skips)
    rel_paths = [f.relative_to(root).as_posix() for f in files]
    stats = {}
    for rel in rel_paths:
        try:
            stats[rel] = (root / rel).stat()
        except OSError as e:  # vanished since the listing, symlink loop, ...
            err = file_error(e, root / rel)
            skips.add(root / rel, err.reason, err.detail)
    rel_paths = [r for r in rel_paths if r in stats]
    if cfg.shard:
        return run_shard(cfg, backbone, enc, record, root, rel_paths, stats, skips)

    old = None
    if cfg.update:
        if not (Path(cfg.out) / MANIFEST).is_file():
            raise IndexLoadError(f"--update: {cfg.out} holds no index yet; run without --update to build one")
        old = load_index(cfg.out, use_gpu=False)
        check_same_encoder(old.manifest, record, enc, cfg.out)
        if old.manifest.layout.get("invlists") == "ondisk":
            raise IndexLoadError(f"--update: {cfg.out} keeps its inverted lists on disk, read-only; re-embed the "
                                 f"changed shards with --shard and run pipelines.merge_shards again")
    plan = plan_update(rel_paths, stats, root, old)
    log.info("%d images: %d to embed, %d unchanged, %d removed", len(rel_paths), len(plan.embed),
             len(plan.reuse), len(plan.removed))

    ok, new_emb, hashes = embed_files([root / r for r in plan.embed], backbone, enc, cfg, skips)
    next_id = old.manifest.next_id if old else 0
    old_ids = {it.path: it.id for it in old.manifest.items} if old else {}
    rows: dict[str, tuple[np.ndarray, Item]] = {rel: (old.embeddings[r], it) for rel, (r, it) in plan.reuse.items()}
    added_ids = []
    for j, rel in enumerate(plan.embed):
        if not ok[j]:
            continue
        if rel in old_ids:
            new_id = old_ids[rel]
        else:
            new_id, next_id = next_id, next_id + 1
        st = stats[rel]
        rows[rel] = (new_emb[j], Item(rel, st.st_size, st.st_mtime_ns, hashes[j], new_id))
        added_ids.append(new_id)
    if not rows:
        raise ValueError(f"--data {root}: no readable image ({skips.summary()})")
    order = sorted(rows)
    embeddings = np.stack([rows[p][0] for p in order]).astype(np.float32)  # (M, D)
    items = [rows[p][1] for p in order]
    ids = np.array([it.id for it in items], np.int64)  # (M,)

    key = cfg.index_key or choose_index_key(len(items), enc.feat_dim, cfg.memory_budget_gb * 1e9)
    if old is not None and key == old.manifest.index_key and supports_remove(key):
        gone = [old_ids[p] for p in plan.removed] + [old_ids[p] for p in plan.changed]
        add = np.array(added_ids, np.int64)
        row_of = {int(i): r for r, i in enumerate(ids)}
        index = update_index(old.index, np.array(gone, np.int64), embeddings[[row_of[i] for i in add]], add)
        params = old.manifest.search_params
        log.info("updated %s in place (%d removed, %d added)", key, len(gone), len(add))
    else:
        index = build_index(embeddings, ids, key, seed=cfg.seed)
        params = default_search_params(key, len(items))
        log.info("built %s over %d vectors in %.1fs", key, len(items), time.perf_counter() - t0)

    manifest = Manifest(index_key=key, dim=enc.feat_dim, count=len(items), data_root=str(root.resolve()),
                        encoder=record, items=items, search_params=params, next_id=next_id,
                        skipped=skips.as_dict(), build=asdict(cfg))

    write_index_dir(cfg.out, index, embeddings, ids, manifest,
                    before_swap=lambda tmp: crash_point("index:before_swap"),
                    after_swap=lambda old: crash_point("index:after_swap"))
    counts = {"images": len(items), "embedded": int(ok.sum()),
              "added": sum(1 for p in plan.embed if p not in old_ids and p in rows),
              "changed": sum(1 for p in plan.changed if p in rows), "removed": len(plan.removed)
              + sum(1 for p in plan.changed if p not in rows),
              "unchanged": len(plan.reuse), "skipped": skips.total, "index_key": key,
              "seconds": round(time.perf_counter() - t0, 2)}
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
    return BuildConfig(**vars(p.parse_args(argv)))


def main(argv=None) -> int:
    cfg = parse_args(argv)
    return run_cli(lambda: run(cfg))  # IndexLoadError, EncoderLoadError, bad arguments


if __name__ == "__main__":
    sys.exit(main())
