"""Exact and near duplicates among indexed images.

    exact_groups(hashes)              -> groups of rows with the same content hash
    near_pairs(x (M, D), threshold)   -> (rows_a, rows_b, scores): all pairs a < b with cosine >= threshold
    near_pairs_reranked(index, x, ids, threshold) -> the same through a compressed index: range search
                                         with a margin for the codes' error, then exact scores from x
    group_pairs(M, rows_a, rows_b)    -> connected components (size >= 2) of those pairs
    find_duplicates(hashes, x, threshold, phashes=, hamming=, crowding=) -> exact groups and near groups (cosine
                                         >= threshold or pHash distance <= hamming; with `crowding`, only pairs
                                         that stand apart from their neighbours), with their cosines and distances
    (the stand-apart test `Crowding` lives in index/crowding.py)
    keeper(rows, pixels, sizes, mtimes)  -> the row to keep of a group
    action_groups(M, found)              -> exact and near groups joined where they share an image
    with_keepers(found, pixels, sizes, mtimes) -> found + the keeper of every group
    detect_duplicates(loaded, threshold, hamming, ...) -> the same on a loaded index, pHashes cached beside it
    saved_rule(index_dir, created)       -> the rule pipelines.duplicates saved for this build (for the page)
    suggest_threshold(x)              -> a collection-specific near-duplicate threshold
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

from index.crowding import Crowding
from index.faiss_index import as_vectors, search
from index.phash import load_or_compute, min_hamming, phash_pairs
from index.rerank import RowMap, exact_scores, pair_scores


def exact_groups(hashes: list[str]) -> list[list[int]]:
    """Rows sharing a content hash, groups of >= 2, each sorted, ordered by first row."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for row, h in enumerate(hashes):
        by_hash[h].append(row)
    return sorted((rows for rows in by_hash.values() if len(rows) > 1), key=lambda g: g[0])


class TooManyPairs(ValueError):
    """A threshold so low that the pairs would not fit in memory; the message says to raise it."""


def near_pairs(x: np.ndarray, threshold: float, batch: int = 4096,
               max_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (a < b) with cosine(x_a, x_b) >= threshold, by exact FAISS range search.

    Returns int64 rows_a (P,), rows_b (P,), float32 scores (P,), sorted by (a, b).
    Raises TooManyPairs as soon as more than `max_pairs` are found (when given).
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold}: a cosine similarity is between -1 and 1")
    x = as_vectors(x)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    # range_search keeps scores > radius; nudge down so `>= threshold` is kept
    radius = float(np.nextafter(np.float32(threshold), np.float32(-2)))
    rows_a, rows_b, scores = [], [], []
    for start in range(0, len(x), batch):
        lims, D, I = index.range_search(x[start:start + batch], radius)
        # (P',) the query row of each result
        q = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims.astype(np.int64)))
        keep = I > q
        rows_a.append(q[keep]), rows_b.append(I[keep]), scores.append(D[keep])
        found = sum(len(r) for r in rows_a)
        if max_pairs is not None and found > max_pairs:
            raise TooManyPairs(f"more than {max_pairs:,} pairs have cosine >= {threshold}; raise the threshold "
                               f"(try {suggest_threshold(x):.3f})")
    a, b, s = (np.concatenate(v) for v in (rows_a, rows_b, scores))
    order = np.lexsort((b, a))
    return a[order].astype(np.int64), b[order].astype(np.int64), s[order].astype(np.float32)


def score_margin(index: faiss.Index, x: np.ndarray, row_map: RowMap, sample: int = 256, candidates: int = 50,
                 seed: int = 0) -> float:
    """How far below the exact cosine a compressed index can score a close pair: the largest
    (exact - approximate) gap over the top `candidates` of `sample` rows, measured on this index, + 0.01."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x), min(sample, len(x)), replace=False))
    xq = as_vectors(x[rows])
    D, I = search(index, xq, candidates)  # (S, C) approximate
    gap = exact_scores(xq, row_map.rows(I), x) - D  # (S, C); -inf where no candidate
    return float(max(0.0, np.max(gap[np.isfinite(gap)], initial=0.0))) + 0.01


def _ivf_params(index: faiss.Index, nprobe: int | None):
    """Per-call SearchParameters with `nprobe` lists probed (None: the index's own), also through OPQ."""
    if nprobe is None:
        return None
    params = faiss.SearchParametersIVF(nprobe=int(nprobe))
    if isinstance(faiss.downcast_index(index), faiss.IndexPreTransform):
        params = faiss.SearchParametersPreTransform(index_params=params)
    return params


def near_pairs_reranked(index: faiss.Index, x: np.ndarray, ids: np.ndarray, threshold: float,
                        rows: np.ndarray | None = None, nprobe: int | None = None, batch: int = 1024,
                        max_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`near_pairs` through a compressed `index` over x (M, D) (memory-mapped is fine) keyed by `ids` (M,).

    A range search at threshold - `score_margin` finds candidate pairs; their exact cosine,
    from x, decides. `rows` (default all) are the query rows, `nprobe` the IVF lists probed
    (default the index's). Returns pairs a < b with exact score >= threshold, sorted by (a, b).
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold}: a cosine similarity is between -1 and 1")
    row_map = RowMap(ids)
    radius = threshold - score_margin(index, x, row_map)
    rows = np.arange(len(x)) if rows is None else np.asarray(rows, np.int64)
    params = _ivf_params(index, nprobe)
    found_a, found_b = [], []
    for start in range(0, len(rows), batch):
        q = rows[start:start + batch]
        lims, _, I = index.range_search(as_vectors(x[q]), radius, params=params)
        qa = np.repeat(q, np.diff(lims.astype(np.int64)))  # (P',) query row per candidate
        qb = row_map.rows(I)
        keep = (qb >= 0) & (qb != qa)
        found_a.append(np.minimum(qa[keep], qb[keep])), found_b.append(np.maximum(qa[keep], qb[keep]))
        if max_pairs is not None and sum(map(len, found_a)) > max_pairs * 4:
            raise TooManyPairs(f"more than {max_pairs:,} candidate pairs near cosine {threshold}; raise the "
                               f"threshold")
    pairs = np.unique(np.stack([np.concatenate(found_a), np.concatenate(found_b)], 1), axis=0)  # (P, 2)
    s = pair_scores(x, pairs[:, 0], pairs[:, 1])
    keep = s >= np.float32(threshold)
    return pairs[keep, 0].astype(np.int64), pairs[keep, 1].astype(np.int64), s[keep]


def group_pairs(m: int, rows_a: np.ndarray, rows_b: np.ndarray) -> list[list[int]]:
    """Connected components of size >= 2 of the graph on m rows with the given edges."""
    parent = list(range(m))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(rows_a.tolist(), rows_b.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(m):
        groups[find(i)].append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def suggest_threshold(x: np.ndarray, flagged: float = 0.01, sample: int = 5000, seed: int = 0) -> float:
    """A near-duplicate threshold for this collection: the cosine above which about `flagged`
    of the images have their nearest other image (embeddings of weak encoders crowd together,
    so no fixed value suits every index). Estimated on at most `sample` query rows.
    """
    x = as_vectors(x)
    if len(x) < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    xq = x if len(x) <= sample else x[np.sort(rng.choice(len(x), sample, replace=False))]
    D, _ = faiss.knn(xq, x, 2, metric=faiss.METRIC_INNER_PRODUCT)  # (n, 2): itself, then its nearest other
    return float(np.clip(np.quantile(D[:, 1], 1.0 - flagged), -1.0, 1.0))


def find_duplicates(hashes: list[str], x: np.ndarray, threshold: float | None, max_pairs: int | None = None,
                    index: faiss.Index | None = None, ids: np.ndarray | None = None,
                    phashes: np.ndarray | None = None, hamming: int | None = None,
                    hash_kinds: tuple[str, ...] = ("plain",), hashed: np.ndarray | None = None,
                    hash_floor: float = -1.0, crowding: Crowding | None = None) -> dict:
    """Exact groups (same sha256) and near groups of the M indexed rows.

    A near pair has cosine >= `threshold` (None: the encoder is not asked), or, given perceptual
    hashes `phashes` uint64 (M, 4) (`index.phash`) and `hamming`, a pHash distance <= `hamming`
    over `hash_kinds` and a cosine >= `hash_floor` (`hashed` (M,) bool: rows that have a hash;
    default all). With `crowding`, only pairs that stand apart count (`Crowding`; pHash
    neighbours among the rows with a hash). Cosine pairs come
    from an exact range search over x, or, given a compressed `index` keyed by `ids`, from
    `near_pairs_reranked` (the scores are exact either way). Pairs of byte-identical files are
    reported only as exact. Returns {"exact": [[row, ...], ...], "near": [{"rows": [...],
    "pairs": [(a, b, cosine), ...], "hamming": [distance or -1 per pair]}, ...], "crowded":
    {"phash": pairs, "cosine": pairs} left out by `crowding`}.
    """
    exact = exact_groups(hashes)
    has = np.ones(len(hashes), bool) if hashed is None else np.asarray(hashed, bool)  # (M,) rows with a hash
    crowded = {"phash": 0, "cosine": 0}
    a, b = np.empty(0, np.int64), np.empty(0, np.int64)
    if threshold is not None:
        a, b, crowded["cosine"] = _cosine_pairs(x, threshold, max_pairs, index, ids, crowding, phashes, has,
                                                hash_kinds)
    if phashes is not None and hamming is not None:
        rows = np.flatnonzero(has)  # (H,)
        ha, hb, hd = phash_pairs(phashes[rows], hamming, hash_kinds)
        trusted = pair_scores(x, rows[ha], rows[hb]) >= np.float32(hash_floor)
        if crowding is not None:
            apart = crowding.hash_apart(phashes[rows], ha, hb, hd, hash_kinds)
            crowded["phash"] = int((trusted & ~apart).sum())
            trusted &= apart
        ha, hb = rows[ha], rows[hb]
        pairs = np.unique(np.concatenate([np.stack([a, b], 1), np.stack([ha[trusted], hb[trusted]], 1)]), axis=0)
        a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    _, code = np.unique(np.asarray(hashes), return_inverse=True)  # (M,) one int per distinct hash
    keep = code[a] != code[b]
    a, b = a[keep], b[keep]
    dist = _pair_hamming(phashes, has, a, b, hash_kinds)
    return {"exact": exact, "near": _near_groups(len(hashes), a, b, pair_scores(x, a, b), dist), "crowded": crowded}


def _pair_hamming(phashes: np.ndarray | None, has: np.ndarray, a: np.ndarray, b: np.ndarray,
                  kinds: tuple[str, ...]) -> np.ndarray:
    """int64 (P,): `min_hamming` of pairs (a, b), -1 where either row has no pHash (or none are given)."""
    dist = np.full(len(a), -1, np.int64)
    if phashes is not None:
        both = has[a] & has[b]
        dist[both] = min_hamming(phashes[a[both]], phashes[b[both]], kinds)
    return dist


def _cosine_pairs(x: np.ndarray, threshold: float, max_pairs: int | None, index: faiss.Index | None,
                  ids: np.ndarray | None, crowding: Crowding | None, phashes: np.ndarray | None, has: np.ndarray,
                  kinds: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairs (a, b) with cosine >= threshold (exact range search, or through a compressed `index`), those
    `crowding` leaves out removed; and how many it left out."""
    if index is None:
        a, b, s = near_pairs(x, threshold, max_pairs=max_pairs)
    else:
        a, b, s = near_pairs_reranked(index, x, ids, threshold, max_pairs=max_pairs)
    if crowding is None:
        return a, b, 0
    keep = crowding.cos_apart(x, a, b, s)
    if crowding.cos_hamming < 64:  # the pHashes must agree too: rows without one cannot
        if phashes is None:
            raise ValueError(f"crowding asks cosine pairs for a pHash distance <= {crowding.cos_hamming}: "
                             f"pass phashes")
        dist = _pair_hamming(phashes, has, a, b, kinds)
        keep &= (dist >= 0) & (dist <= crowding.cos_hamming)
    return a[keep], b[keep], int((~keep).sum())


def _near_groups(m: int, a: np.ndarray, b: np.ndarray, s: np.ndarray, dist: np.ndarray) -> list[dict]:
    """Connected components of the pairs, each with its pairs (a, b, cosine) and their pHash distances."""
    groups = group_pairs(m, a, b)
    group_of = {r: g for g, rows in enumerate(groups) for r in rows}
    pairs_of: list[list[tuple[int, int, float]]] = [[] for _ in groups]
    dist_of: list[list[int]] = [[] for _ in groups]
    for i, j, v, d in zip(a.tolist(), b.tolist(), s.tolist(), dist.tolist()):
        pairs_of[group_of[i]].append((i, j, v))
        dist_of[group_of[i]].append(d)
    return [{"rows": g, "pairs": p, "hamming": d} for g, p, d in zip(groups, pairs_of, dist_of)]


def keeper(rows: list[int], pixels: np.ndarray, sizes: np.ndarray, mtimes: np.ndarray) -> int:
    """The row to keep in a group: most pixels, then the largest file, then the newest, then the first."""
    return max(rows, key=lambda r: (int(pixels[r]), int(sizes[r]), int(mtimes[r]), -r))


def action_groups(m: int, found: dict) -> list[list[int]]:
    """Exact and near groups of `find_duplicates` joined where they share an image: the groups a
    user acts on (one keeper each), connected components over all their pairs."""
    a = [g[0] for g in found["exact"] for _ in g[1:]] + [i for g in found["near"] for i, _, _ in g["pairs"]]
    b = [r for g in found["exact"] for r in g[1:]] + [j for g in found["near"] for _, j, _ in g["pairs"]]
    return group_pairs(m, np.array(a, np.int64), np.array(b, np.int64))


def with_keepers(found: dict, pixels: np.ndarray, sizes: np.ndarray, mtimes: np.ndarray) -> dict:
    """`found` plus "keepers": the `keeper` of each exact and near group, and the `action_groups`
    with theirs: {"exact": [row], "near": [row], "groups": [[row, ...]], "group_keepers": [row]}."""
    groups = action_groups(len(pixels), found)
    return {**found, "keepers": {
        "exact": [keeper(g, pixels, sizes, mtimes) for g in found["exact"]],
        "near": [keeper(g["rows"], pixels, sizes, mtimes) for g in found["near"]],
        "groups": groups, "group_keepers": [keeper(g, pixels, sizes, mtimes) for g in groups]}}


DUPLICATES_FILE = "duplicates.json"  # INDEX_DIR/DUPLICATES_FILE: written by pipelines.duplicates


def saved_rule(index_dir: str | os.PathLike, created: str) -> dict | None:
    """The rule pipelines.duplicates saved for this build of the index (its manifest's `created`):
    {"threshold", "hamming", "hash_floor", "hash_kinds", "crowding" (a Crowding or None), "sentence", ...};
    None when there is none,
    it is unreadable or it was made for another build."""
    try:
        saved = json.loads((Path(index_dir) / DUPLICATES_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("index_created") != created or saved.get("threshold") is None:
        return None
    cal = saved.get("calibration") if isinstance(saved.get("calibration"), dict) else {}
    try:
        crowding = Crowding(**saved["crowding"]) if isinstance(saved.get("crowding"), dict) else None
        return {"threshold": float(saved["threshold"]), "hamming": saved.get("hamming"),
                "hash_floor": float(saved.get("hash_floor", -1.0)),
                "hash_kinds": tuple(cal.get("hash_kinds", ("plain",))), "crowding": crowding,
                "sentence": saved.get("reason", ""), "calibrated": bool(cal)}
    except (TypeError, ValueError):  # written by another version or edited by hand
        return None


def saved_rule_stamp(index_dir: str | os.PathLike) -> int:
    """Changes whenever pipelines.duplicates saves a new rule (duplicates.json's mtime); 0 if none."""
    try:
        return os.stat(Path(index_dir) / DUPLICATES_FILE).st_mtime_ns
    except OSError:
        return 0


def header_pixels(files: list[Path], rows: list[int]) -> np.ndarray:
    """Width x height of files[rows] from their headers (0 if unreadable) -> int64 (M,), zeros elsewhere."""
    out = np.zeros(len(files), np.int64)
    for r in rows:
        try:
            with Image.open(files[r]) as im:
                out[r] = im.width * im.height
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    return out


def detect_duplicates(loaded, threshold: float | None, hamming: int | None = None, hash_floor: float = -1.0,
                      hash_kinds: tuple[str, ...] = ("plain",), max_pairs: int | None = None,
                      crowding: Crowding | None = None) -> dict:
    """`find_duplicates` on a loaded index (`index.store.LoadedIndex`) with `with_keepers`: pHashes
    (when `hamming` is given) from INDEX_DIR/phash.npz, computed and cached where missing."""
    items = loaded.manifest.items
    hashes = [it.sha256 for it in items]
    files = [loaded.absolute(it.path) for it in items]
    phashes = ok = None
    if hamming is not None:
        ok, phashes, pixels = load_or_compute(loaded.directory, files, hashes)
    compressed = "rerank" in loaded.manifest.search_params  # too large to scan pairwise: re-ranked range search
    found = find_duplicates(hashes, loaded.embeddings, threshold, max_pairs=max_pairs,
                            index=loaded.index if compressed else None, ids=loaded.ids, phashes=phashes,
                            hamming=hamming, hash_kinds=hash_kinds, hashed=ok, hash_floor=hash_floor,
                            crowding=crowding)
    if hamming is None:
        grouped = sorted({r for g in found["exact"] for r in g} | {r for g in found["near"] for r in g["rows"]})
        pixels = header_pixels(files, grouped)
    return with_keepers(found, pixels, np.array([it.size for it in items]), np.array([it.mtime_ns for it in items]))


def near_groups_best_first(near: list[dict], shown: int = 3) -> list[tuple[dict, float, list[int]]]:
    """Near groups (`find_duplicates(...)["near"]`) ordered by their best pair's score, each with
    that score and up to `shown` rows to show: the members of its best pairs, best first."""
    out = []
    for group in near:
        best = sorted(group["pairs"], key=lambda p: -p[2])[:shown]
        rows = list(dict.fromkeys(r for a, b, _ in best for r in (a, b)))[:shown]
        out.append((group, best[0][2], rows))
    return sorted(out, key=lambda t: -t[1])
