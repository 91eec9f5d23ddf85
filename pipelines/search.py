"""Find the nearest indexed images to query images (or to an already indexed image).

    python -m pipelines.search --index INDEX_DIR --query IMAGE [IMAGE ...] [-k 10] [--json]
    python -m pipelines.search --index INDEX_DIR --indexed REL_PATH [-k 10]

A folder given as a query means every image in it. The encoder recorded in the index's
manifest is loaded once for all queries (its hash is checked), and each query image goes
through exactly the indexing preprocessing.

The query functions live in `index.query` (shared with the search page, so the page, this
CLI and the index decode and embed the same bytes the same way).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from encoders.imagefolder import SkipReport, UnreadableImage, scan_images
from encoders.runtime import pick_device
from index.query import decode_query, load_query_encoder, search_images, search_indexed
from index.store import load_index
from pipelines.cli import run_cli

log = logging.getLogger(__name__)


@dataclass
class SearchConfig:
    index: str = ""
    query: list[str] = field(default_factory=list)
    indexed: list[str] = field(default_factory=list)
    k: int = 10
    json: bool = False
    encoder: str | None = None  # default: the path recorded in the manifest
    device: str = "auto"


def expand_queries(queries: list[str], skips: SkipReport) -> list[Path]:
    out = []
    for q in queries:
        p = Path(q)
        if p.is_dir():
            out += scan_images(p, skips)
        elif p.exists() or p.is_symlink():  # a special or looping file: open_rgb says why it fails
            out.append(p)
        else:
            raise ValueError(f"--query {q}: no such file or folder")
    return out


def run(cfg: SearchConfig) -> list[dict]:
    loaded = load_index(cfg.index)
    results = []
    if cfg.query:
        skips = SkipReport()
        paths = expand_queries(cfg.query, skips)
        encoder = load_query_encoder(loaded.manifest, pick_device(cfg.device), cfg.encoder)
        readable, decoded, failed = [], [], []
        for p in paths:  # decode each query first, so one bad file does not stop the others
            try:
                decoded.append(decode_query(p, encoder.cfg))
                readable.append(p)
            except UnreadableImage as e:
                skips.add(p, e.reason, e.detail)
                failed.append(f"{p}: {e}")
        if skips.total:
            log.warning("queries: %s", skips.summary())
        if not readable:
            why = f"; {failed[0]}" + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "") if failed else ""
            raise ValueError(f"no readable query image ({skips.summary()}){why}")
        for p, hits in zip(readable, search_images(loaded, encoder, decoded, cfg.k)):
            results.append({"query": str(p), "neighbours": [asdict(h) for h in hits]})
    for rel in cfg.indexed:
        results.append({"query": rel, "neighbours": [asdict(h) for h in search_indexed(loaded, rel, cfg.k)]})
    return results


def parse_args(argv=None) -> SearchConfig:
    p = argparse.ArgumentParser(prog="python -m pipelines.search", description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True)
    p.add_argument("--query", nargs="+", default=[], help="image files or folders")
    p.add_argument("--indexed", nargs="+", default=[], help="paths (relative to the data root) of indexed images")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--encoder", default=None, help="run folder, if it moved since the index was built")
    p.add_argument("--device", default="auto")
    cfg = SearchConfig(**vars(p.parse_args(argv)))
    if not cfg.query and not cfg.indexed:
        p.error("give --query IMAGE ... or --indexed PATH ...")
    return cfg


def main(argv=None) -> int:
    cfg = parse_args(argv)
    return run_cli(lambda: print_results(run(cfg), cfg.json))


def print_results(results: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(results, indent=1))
        return
    for r in results:
        print(f"query: {r['query']}")
        for rank, h in enumerate(r["neighbours"], 1):
            print(f"  {rank:3d}  {h['score']:.4f}  {h['path']}")


if __name__ == "__main__":
    sys.exit(main())
