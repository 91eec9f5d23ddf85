"""Perceptual hashes of images: 64-bit DCT pHash, the one imagededup uses, and pairs within a Hamming distance.

    phash(img)                      -> uint64: 32x32 grey (Lanczos), 2-D DCT-II, top-left 8x8, each
                                       coefficient >= the median of the 63 non-DC ones -> bit
    image_hashes(img)               -> uint64 (4,): pHash of the image, of its mirror, and both again
                                       after trimming plain borders (letterbox bars, screenshot frames)
    hamming(a, b)                   -> bits that differ, elementwise over uint64 arrays
    hash_pairs(h (M,), radius)      -> (rows_a, rows_b, distance): all pairs a < b with Hamming <= radius
    phash_pairs(hashes (M, 4), radius, kinds) -> the same, over several kinds of hash (plain, mirror, trimmed)
    kth_hamming(hashes (M, 4), k, kinds, rows) -> each row's distance to its k-th nearest other row
    HashCache / load_or_compute(...) -> the hashes of an index's images, cached beside it by sha256

Bit order: row-major over the 8x8 block, coefficient (0, 0) is the most significant bit.
Legend: M images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from PIL import Image, ImageOps
from scipy.fft import dct

from encoders.files import atomic_write_with
from encoders.imagefolder import UnreadableImage, open_rgb

HASH_KINDS = ("plain", "plain_mirror", "trimmed", "trimmed_mirror")  # columns of image_hashes / the cache
CACHE_FILE = "phash.npz"  # INDEX_DIR/CACHE_FILE: sha256 (M,) -> hashes (M, 4), pixels (M,)
_BITS = (np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64))  # (64,) weight of each bit, MSB first


def phash_array(grey32: np.ndarray) -> np.uint64:
    """float (32, 32) grey pixels -> the 64-bit pHash."""
    coef = dct(dct(grey32, axis=0, type=2), axis=1, type=2)[:8, :8]  # (8, 8) lowest frequencies
    bits = (coef >= np.median(coef.ravel()[1:])).ravel()  # (64,) median of the 63 non-DC coefficients
    return np.uint64(np.bitwise_or.reduce(_BITS[bits], initial=np.uint64(0)))


def phash(img: Image.Image) -> np.uint64:
    """The 64-bit pHash of a PIL image (imagededup's PHash: greyscale, 32x32 Lanczos, DCT, median)."""
    grey = img.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    return phash_array(np.asarray(grey, np.float64))


def trim_borders(img: Image.Image, tolerance: float = 10.0, keep: float = 0.1, bar: float = 0.06
                 ) -> Image.Image:
    """`img` without the plain bands along its edges: letterbox bars, the screen around a photo in a
    screenshot. From each edge inwards, lines (rows / columns) that are one colour (every grey value
    within `tolerance` of the line's median) are cut, and so is a thin band (at most `bar` of the
    size: a status bar with its clock and icons) between plain lines. The picture's own plain margins
    go too, so a copy and its original are cut to the same box. Nothing is cut when less than `keep`
    of the width or height would remain (a plain picture). Found on a <= 256 px copy; cropped on `img`."""
    small = img.convert("L")
    small.thumbnail((256, 256), Image.Resampling.NEAREST)  # no blending: a frame's edge stays one line
    g = np.asarray(small, np.float32)  # (h, w)
    h, w = g.shape
    if h < 8 or w < 8:
        return img

    def cut(lines: np.ndarray) -> int:  # lines (n, L) from the edge inwards -> how many to cut
        n = len(lines)
        if not lines.size:
            return 0
        plain = np.abs(lines - np.median(lines, axis=1, keepdims=True)).max(axis=1) <= tolerance  # (n,)
        at, thin = 0, max(1, int(bar * n))
        while at < n and plain[at]:
            at += 1
        while 0 < at < n:  # after plain lines, a thin busy band then plain lines again: a bar, cut it too
            after = np.flatnonzero(plain[at:at + thin + 1])
            if not len(after):
                break
            end = nxt = at + after[0]
            while end < n and plain[end]:
                end += 1
            if end - nxt < 2:  # a single plain line inside the picture is no border
                break
            at = end
        return at

    top = bottom = left = right = 0
    for _ in range(8):  # rows, then columns of what is left (a bar across the top is not in a column's way), ...
        inner = g[:, left:w - right]
        box = (cut(inner), cut(inner[::-1]))
        if box[0] + box[1] >= h:  # one colour from top to bottom
            return img
        inner = g[box[0]:h - box[1]]
        box += (cut(inner.T), cut(inner.T[::-1]))
        if box == (top, bottom, left, right) or box[0] + box[1] >= h or box[2] + box[3] >= w:
            break
        top, bottom, left, right = box
    if top + bottom + left + right == 0 or h - top - bottom < keep * h or w - left - right < keep * w:
        return img
    sx, sy = img.width / w, img.height / h
    box = (round(left * sx), round(top * sy), round(img.width - right * sx), round(img.height - bottom * sy))
    return img.crop(box)


def image_hashes(img: Image.Image) -> np.ndarray:
    """uint64 (4,) in HASH_KINDS order: pHash of `img`, of its mirror image, and the same two after `trim_borders`."""
    trimmed = trim_borders(img)
    return np.array([phash(img), phash(ImageOps.mirror(img)), phash(trimmed), phash(ImageOps.mirror(trimmed))],
                    np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes (broadcast elementwise) -> int64."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))).astype(np.int64)


def _as_codes(h: np.ndarray) -> np.ndarray:
    """uint64 (M,) -> uint8 (M, 8), big-endian, the layout of a faiss binary index."""
    return np.ascontiguousarray(np.asarray(h, np.uint64).astype(">u8")).view(np.uint8).reshape(-1, 8)


def hash_pairs(h: np.ndarray, radius: int, other: np.ndarray | None = None, batch: int = 8192
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs a < b of uint64 hashes h (M,) with Hamming(h[a], h[b]) <= radius, by faiss's exact
    binary range search; with `other` (M,), pairs where Hamming(h[a], other[b]) or Hamming(h[b],
    other[a]) is <= radius (e.g. other = the mirror images' hashes). Returns int64 rows_a (P,),
    rows_b (P,), distances (P,: the smaller of the two), sorted by (a, b)."""
    if not 0 <= radius <= 64:
        raise ValueError(f"Hamming radius {radius}: a 64-bit hash has distances 0..64")
    db = h if other is None else other
    index = faiss.IndexBinaryFlat(64)
    index.add(_as_codes(db))
    codes = _as_codes(h)  # (M, 8)
    rows_a, rows_b = [], []
    for start in range(0, len(codes), batch):
        lims, _, I = index.range_search(codes[start:start + batch], radius + 1)  # keeps distance < radius + 1
        q = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims.astype(np.int64)))  # (P',) query rows
        I = I.astype(np.int64)
        keep = I > q if other is None else I != q
        rows_a.append(np.minimum(q[keep], I[keep])), rows_b.append(np.maximum(q[keep], I[keep]))
    if not rows_a:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    pairs = np.unique(np.stack([np.concatenate(rows_a), np.concatenate(rows_b)], 1), axis=0).reshape(-1, 2)  # (P, 2)
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    d = hamming(h[a], db[b]) if other is None else np.minimum(hamming(h[a], db[b]), hamming(h[b], db[a]))
    return a, b, d


def min_hamming(ha: np.ndarray, hb: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    """Per pair, the smallest Hamming distance between a's plain hash and b's hashes of `kinds`
    (and a's of the same kinds against b's plain one): ha, hb uint64 (P, 4) -> int64 (P,).
    With kinds ("plain",) this is imagededup's distance."""
    cols = [HASH_KINDS.index(k) for k in kinds]
    best = np.full(len(ha), 64, np.int64)
    for c in cols:
        # the same transform on both sides (trimmed vs trimmed) or a mirror against the plain original
        other = HASH_KINDS.index("trimmed") if HASH_KINDS[c].startswith("trimmed") else 0
        best = np.minimum(best, hamming(ha[:, other], hb[:, c]))
        best = np.minimum(best, hamming(ha[:, c], hb[:, other]))
    return best


def phash_pairs(hashes: np.ndarray, radius: int, kinds: tuple[str, ...] = ("plain",)
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs a < b of images, hashes uint64 (M, 4), whose `min_hamming` over `kinds` is <= radius.
    Returns int64 rows_a (P,), rows_b (P,), distances (P,), sorted by (a, b)."""
    found = []
    for k in kinds:
        c = HASH_KINDS.index(k)
        base = HASH_KINDS.index("trimmed") if k.startswith("trimmed") else 0
        a, b, _ = hash_pairs(hashes[:, base], radius, None if c == base else hashes[:, c])
        found.append(np.stack([a, b], 1))
    pairs = np.unique(np.concatenate(found), axis=0).reshape(-1, 2) if found else np.empty((0, 2), np.int64)
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    return a, b, min_hamming(hashes[a], hashes[b], kinds)


def kth_hamming(hashes: np.ndarray, k: int, kinds: tuple[str, ...] = ("plain",), rows: np.ndarray | None = None
                ) -> np.ndarray:
    """The `min_hamming` over `kinds` from each of hashes[rows] (default all) to its k-th nearest
    other row of `hashes` uint64 (M, 4) -> int64 (R,); 65 (farther than any) when M <= k.

    Exact: each comparison `min_hamming` makes (plain vs plain, plain vs mirror, ...) is one
    faiss binary k+1-NN search; a true k nearest row missing from a search's list has k others
    at most as far in it, so the k-th smallest over the searches' union is the k-th distance."""
    if k < 1:
        raise ValueError(f"k {k}: the k-th nearest needs k >= 1")
    rows = np.arange(len(hashes)) if rows is None else np.asarray(rows, np.int64)
    if len(hashes) <= k:
        return np.full(len(rows), 65, np.int64)
    found = []
    for kind in kinds:
        c = HASH_KINDS.index(kind)
        base = HASH_KINDS.index("trimmed") if kind.startswith("trimmed") else 0
        for query, db in {(base, c), (c, base)}:
            index = faiss.IndexBinaryFlat(64)
            index.add(_as_codes(hashes[:, db]))
            _, I = index.search(_as_codes(hashes[rows, query]), k + 1)  # (R, k + 1), itself among them
            found.append(I.astype(np.int64))
    cand = np.sort(np.concatenate(found, 1), axis=1)  # (R, C) candidate rows, each row's list sorted
    r, c = len(rows), cand.shape[1]
    d = min_hamming(np.repeat(hashes[rows], c, axis=0), hashes[cand.ravel()], kinds).reshape(r, c)  # (R, C)
    repeated = np.zeros_like(cand, bool)
    repeated[:, 1:] = cand[:, 1:] == cand[:, :-1]  # the same row found by several searches counts once
    d[repeated | (cand == rows[:, None]) | (cand < 0)] = 99
    return np.sort(d, axis=1)[:, k - 1]


@dataclass
class HashCache:
    """The perceptual hashes of image contents, by sha256: hashes uint64 (M, 4), pixels int64 (M,)."""

    sha256: np.ndarray  # (M,) bytes, 'S64'
    hashes: np.ndarray  # (M, 4) uint64, HASH_KINDS
    pixels: np.ndarray  # (M,) int64, width x height

    @classmethod
    def empty(cls) -> "HashCache":
        return cls(np.empty(0, "S64"), np.empty((0, 4), np.uint64), np.empty(0, np.int64))

    @classmethod
    def read(cls, index_dir: str | os.PathLike) -> "HashCache":
        """INDEX_DIR/phash.npz, or an empty cache when it is missing or unreadable (it is only a cache)."""
        try:
            with np.load(Path(index_dir) / CACHE_FILE, allow_pickle=False) as z:
                c = cls(z["sha256"].astype("S64"), z["hashes"].astype(np.uint64), z["pixels"].astype(np.int64))
        except (OSError, ValueError, KeyError, EOFError):
            return cls.empty()
        ok = c.hashes.ndim == 2 and c.hashes.shape[1] == len(HASH_KINDS) and len(c.sha256) == len(c.hashes) \
            == len(c.pixels)
        return c if ok else cls.empty()

    def write(self, index_dir: str | os.PathLike) -> None:
        def save(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, sha256=self.sha256, hashes=self.hashes, pixels=self.pixels)
        atomic_write_with(Path(index_dir) / CACHE_FILE, save)

    def lookup(self, sha256: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (found (M,) bool, hashes (M, 4), pixels (M,)) for these contents (zeros where not found)."""
        row = {s: r for r, s in enumerate(self.sha256.tolist())}
        rows = np.array([row.get(s.encode(), -1) for s in sha256], np.int64)
        found = rows >= 0
        hashes = np.zeros((len(sha256), len(HASH_KINDS)), np.uint64)
        pixels = np.zeros(len(sha256), np.int64)
        hashes[found], pixels[found] = self.hashes[rows[found]], self.pixels[rows[found]]
        return found, hashes, pixels


def file_hashes(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A file's `image_hashes` (decoded as the index reads it, JPEGs drafted to >= 512 px: at 256
    the DCT-domain downscale blurs a screenshot's frame edge and its borders are no longer cut)
    and its pixel count at full size. Raises UnreadableImage."""
    with Image.open(path) as im:
        pixels = int(im.width) * int(im.height)
    return image_hashes(open_rgb(path, draft_size=512)), pixels


def load_or_compute(index_dir: str | os.PathLike, files: list[Path], sha256: list[str], save: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of the indexed `files` (with their manifest `sha256`): from INDEX_DIR/phash.npz where
    known, computed (and, with `save`, added to the cache atomically) where not.
    Returns (ok (M,) bool: readable, hashes uint64 (M, 4), pixels int64 (M,))."""
    cache = HashCache.read(index_dir)
    found, hashes, pixels = cache.lookup(sha256)
    ok = found.copy()
    for r in np.flatnonzero(~found):
        try:
            hashes[r], pixels[r] = file_hashes(files[r])
            ok[r] = True
        except (UnreadableImage, OSError, Image.DecompressionBombError, ValueError):
            pass  # vanished or broken since indexing: no hash, never a pair
    if save and (~found & ok).any():
        keep = sorted({s: r for r, s in enumerate(sha256) if ok[r]}.items())  # one row per content
        new = HashCache(np.array([s.encode() for s, _ in keep], "S64"),
                        hashes[[r for _, r in keep]], pixels[[r for _, r in keep]])
        new.write(index_dir)
    return ok, hashes, pixels
