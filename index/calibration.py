"""A near-duplicate threshold calibrated on the collection itself, without labels.

A fixed cosine cannot suit every index: a whitened embedding's scale depends on the collection
(issue 21: copies of a photo had median cosine 0.69 with their originals on one folder).
So the collection is asked: a sample of its photos is edited in memory the ways people make
accidental copies (`encoders.copies.DUPLICATE_EDITS`: re-saved smaller, trimmed, retoned,
mirrored, grey, framed in a screenshot); each copy against its original is a pair that must be
found. Two crops of different parts of the same photo (`encoders.copies.distinct_crops`) are a
pair that must not: the hardest pair of distinct photos there is (same scene, same colours).

    edited_pairs(files, rows, x, phashes, embed, ...) -> Evidence: cosine and pHashes of both kinds of pair
    choose_threshold(pos_cos, pos_hit, neg_cos, neg_hit, target_recall, max_distinct) -> (threshold, how)
    calibrate(evidence, hamming, kinds, target_recall, max_distinct) -> Calibration: the rule "pHash distance
        <= hamming and cosine >= floor, or cosine >= threshold", each only where the pair stands apart
        (`index.crowding.Crowding`, its margins set here), its rates and a sentence saying them

Photos are edited at a working size (longer side <= 512 px), a few at a time, so calibration
needs little memory whatever the photos' resolution. Legend: P edited copies, N distinct pairs, D dim.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from encoders.copies import DUPLICATE_EDITS, distinct_crops, make_copies, prepare_original
from encoders.imagefolder import UnreadableImage, open_rgb
from index.crowding import NEIGHBOUR_K, Crowding, kth_neighbour
from index.phash import image_hashes, min_hamming

log = logging.getLogger(__name__)
FLOOR_QUANTILE = 0.01  # of the cosines of the edited copies the pHash finds: below it a hash match is not trusted
EDIT_QUANTILE = 0.95  # of the pHash distances of the edited copies the pHash finds: what an edit moves a pHash


@dataclass
class Evidence:
    """Scores of the calibration pairs: P (original, edited copy) pairs and N pairs of distinct crops."""

    pos_cos: np.ndarray  # float32 (P,)
    pos_hash_a: np.ndarray  # uint64 (P, 4): the original's pHashes (index.phash.HASH_KINDS)
    pos_hash_b: np.ndarray  # uint64 (P, 4): the copy's
    pos_edit: np.ndarray  # str (P,): which edit
    neg_cos: np.ndarray  # float32 (N,)
    neg_hash_a: np.ndarray  # uint64 (N, 4)
    neg_hash_b: np.ndarray  # uint64 (N, 4)
    photos: int  # originals edited
    neighbour_cos: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))  # (S,) see kth_neighbour


def edited_pairs(files: list[Path], rows: np.ndarray, x: np.ndarray, phashes: np.ndarray,
                 embed: Callable[[list[Image.Image]], np.ndarray], seed: int = 0, working_size: int = 512,
                 chunk: int = 16) -> Evidence:
    """Edit the photos `files[rows]` (indexed, embeddings x (M, D), pHashes (M, 4)) and score the pairs.

    `embed(images) -> float32 (n, D)` L2-normalised, as the index embeds (the encoder's
    `embed_images`). An original that cannot be read any more is left out.
    """
    rng = np.random.default_rng(seed)
    pos_cos, pos_a, pos_b, pos_edit, neg_cos, neg_a, neg_b = [], [], [], [], [], [], []
    photos = 0
    for start in range(0, len(rows), chunk):
        originals, kept = [], []
        for r in rows[start:start + chunk].tolist():
            try:
                originals.append(prepare_original(open_rgb(files[r], draft_size=working_size), working_size))
                kept.append(r)
            except (UnreadableImage, OSError):
                continue
        if not originals:
            continue
        photos += len(kept)
        copies, src, names = make_copies(originals, seed=int(rng.integers(1 << 31)), edits=DUPLICATE_EDITS)
        crops = [c for img in originals for c in distinct_crops(img, rng)]  # (2n,): a0, b0, a1, b1, ...
        src_rows = np.asarray(kept, np.int64)[src]  # (p,) index row of each copy's original
        e = embed(copies + crops)  # (p + 2n, D)
        ec, ek = e[:len(copies)], e[len(copies):]
        pos_cos.append(np.einsum("pd,pd->p", ec, x[src_rows]))  # (p,)
        pos_a.append(phashes[src_rows])
        pos_b.append(np.stack([image_hashes(c) for c in copies]))
        pos_edit += names
        neg_cos.append(np.einsum("nd,nd->n", ek[0::2], ek[1::2]))  # (n,)
        hk = np.stack([image_hashes(c) for c in crops])  # (2n, 4)
        neg_a.append(hk[0::2]), neg_b.append(hk[1::2])
    if not photos:
        raise ValueError("no photo of the sample could be read for calibration")
    cat = np.concatenate
    return Evidence(cat(pos_cos).astype(np.float32), cat(pos_a), cat(pos_b), np.array(pos_edit),
                    cat(neg_cos).astype(np.float32), cat(neg_a), cat(neg_b), photos, kth_neighbour(x, rows))


NEIGHBOUR_QUANTILE = 0.99  # of the sampled photos' NEIGHBOUR_K-th neighbour cosines: the threshold's lowest


def choose_threshold(pos_cos: np.ndarray, pos_hit: np.ndarray, neg_cos: np.ndarray, neg_hit: np.ndarray,
                     target_recall: float, max_distinct: float) -> tuple[float, str]:
    """The cosine threshold t of the rule "a pair is a duplicate if already `hit` (by the hash) or
    cosine >= t", from positives (P,) and negatives (N,).

    t_hi: the highest t finding `target_recall` of the positives; t_lo: the lowest t whose cosine
    flags at most `max_distinct` of the negatives (besides those the hash already flags: no
    threshold changes those). Both hold between them: t is half way. When they
    conflict, the negatives win (t_lo): a wrong pair costs a user more than a missed one.
    Returns (t, how it was chosen).
    """
    if not 0 < target_recall <= 1 or not 0 <= max_distinct < 1:
        raise ValueError(f"target recall {target_recall} / max distinct {max_distinct}: fractions in (0, 1]")
    if not len(pos_cos) or not len(neg_cos):
        raise ValueError("calibration needs edited copies and distinct pairs")
    cand = np.unique(np.clip(np.concatenate([pos_cos, neg_cos, np.nextafter(neg_cos, np.float32(2)), [1.0]]),
                             -1, 1).astype(np.float32))  # (C,) every threshold where a rate changes
    recall = (pos_hit[None, :] | (pos_cos[None, :] >= cand[:, None])).mean(1)  # (C,) non-increasing in t
    flagged = (~neg_hit[None, :] & (neg_cos[None, :] >= cand[:, None])).mean(1)  # (C,) added by the cosine
    ok_recall, ok_distinct = recall >= target_recall, flagged <= max_distinct
    t_lo = float(cand[np.argmax(ok_distinct)]) if ok_distinct.any() else 1.0
    if not ok_recall.any():
        return t_lo, (f"no threshold finds {target_recall:.0%} of the edited copies; the lowest that flags at most "
                      f"{max_distinct:.1%} of distinct pairs")
    t_hi = float(cand[np.flatnonzero(ok_recall)[-1]])
    if t_hi >= t_lo:
        return (t_lo + t_hi) / 2, (f"half way between {t_lo:.3f}, the lowest threshold flagging at most "
                                   f"{max_distinct:.1%} of distinct pairs, and {t_hi:.3f}, the highest finding "
                                   f"{target_recall:.0%} of edited copies")
    return t_lo, (f"the lowest threshold flagging at most {max_distinct:.1%} of distinct pairs; finding "
                  f"{target_recall:.0%} of edited copies would need {t_hi:.3f}, which flags more")


def crowding_margins(pos_dist: np.ndarray, neg_dist: np.ndarray, hamming: int, max_distinct: float) -> Crowding:
    """The `Crowding` test's margins from the calibration pairs' pHash distances: `hash_margin`, the
    distance 95% of the edited copies the hash finds (`pos_dist` <= `hamming`) stay within (what an
    edit moves a pHash; `hamming` when it finds none); `cos_hamming`, the distance `max_distinct`
    of the distinct pairs (`neg_dist`) lie below (their quantile, rounded down)."""
    found = pos_dist[pos_dist <= hamming]
    margin = int(np.ceil(np.quantile(found, EDIT_QUANTILE))) if len(found) else hamming
    near = int(np.floor(np.quantile(neg_dist, max_distinct))) if len(neg_dist) else 64
    return Crowding(hash_margin=min(margin, 64), cos_hamming=min(max(near, 0), 64))


def hash_floor(pos_cos: np.ndarray) -> float:
    """The cosine a pHash match must also reach: flat, simple pictures (logos, documents, drawings)
    share pHashes without being copies. The value 99% of the edited copies the hash finds reach
    (`pos_cos`: their cosines); with an encoder that scores copies low, it asks for little."""
    return min(float(np.quantile(pos_cos, FLOOR_QUANTILE)), 1.0) if len(pos_cos) else 1.0


@dataclass
class Calibration:
    """The chosen rule and what it does on the calibration pairs (saved in duplicates.json)."""

    threshold: float  # cosine
    hamming: int | None  # pHash distance (None: no hash)
    hash_kinds: list[str]
    floor: float  # a pHash match also needs cosine >= floor
    crowding: dict | None  # index.crowding.Crowding: where a pair must stand apart (None: cosine alone)
    recall: float  # edited copies found by the rule (hash or cosine)
    encoder_recall: float  # edited copies with cosine >= threshold
    distinct_rate: float  # distinct pairs flagged by the rule
    by_edit: dict[str, float]
    edited: int  # P
    distinct: int  # N
    photos: int
    how: str
    sentence: str
    settings: dict = field(default_factory=dict)  # target_recall, max_distinct, sample, seed

    def to_json(self) -> dict:
        return asdict(self)


def calibrate(ev: Evidence, hamming: int | None, kinds: tuple[str, ...], target_recall: float,
              max_distinct: float) -> Calibration:
    """The cosine threshold for the rule "pHash distance <= `hamming` (over `kinds`) or cosine >= t"
    (`hamming` None: cosine alone), chosen on `ev` by `choose_threshold`, with its rates. With a
    hash, the `Crowding` margins too (`crowding_margins`); the rates count its pHash condition on
    cosine pairs (its neighbour tests need the whole collection: `index.duplicates`)."""
    pos_dist = min_hamming(ev.pos_hash_a, ev.pos_hash_b, kinds)  # (P,)
    neg_dist = min_hamming(ev.neg_hash_a, ev.neg_hash_b, kinds)  # (N,)
    raw_pos = np.zeros(len(ev.pos_cos), bool) if hamming is None else pos_dist <= hamming
    raw_neg = np.zeros(len(ev.neg_cos), bool) if hamming is None else neg_dist <= hamming
    floor = hash_floor(ev.pos_cos[raw_pos])
    pos_hit, neg_hit = raw_pos & (ev.pos_cos >= floor), raw_neg & (ev.neg_cos >= floor)
    t, how = choose_threshold(ev.pos_cos, pos_hit, ev.neg_cos, neg_hit, target_recall, max_distinct)
    if len(ev.neighbour_cos):  # never below how close distinct pictures of this collection get
        dense = float(np.quantile(ev.neighbour_cos, NEIGHBOUR_QUANTILE))
        if dense > t:
            t, how = dense, (f"raised from {t:.3f} ({how}) to the cosine {NEIGHBOUR_QUANTILE:.0%} of the photos' "
                             f"{NEIGHBOUR_K}th nearest neighbours stay under")
    t = round(t, 4)  # the value saved, applied and said
    floor = min(floor, t)
    crowd = None if hamming is None else crowding_margins(pos_dist, neg_dist, hamming, max_distinct)
    cap = 64 if crowd is None else crowd.cos_hamming
    pos_hit, neg_hit = raw_pos & (ev.pos_cos >= floor), raw_neg & (ev.neg_cos >= floor)
    found = pos_hit | ((ev.pos_cos >= t) & (pos_dist <= cap))
    rate = float((neg_hit | ((ev.neg_cos >= t) & (neg_dist <= cap))).mean())
    enc_recall = float((ev.pos_cos >= t).mean())
    by_edit = {e: float(found[ev.pos_edit == e].mean()) for e in dict.fromkeys(ev.pos_edit.tolist())}
    hashed = "" if hamming is None else f" ({found.mean():.0%} found with the pHash too: distance <= {hamming})"
    sentence = (f"threshold {t:.3f}: {enc_recall:.0%} of edited copies of {ev.photos} of this collection's photos "
                f"score above it{hashed}, {rate:.1%} of distinct pairs (crops of different parts of one photo) do")
    if crowd is not None:
        sentence += (f"; a pair counts only where it stands apart: a pHash match {crowd.hash_margin} bits (what "
                     f"{EDIT_QUANTILE:.0%} of edits move it at most) closer than either image's {crowd.k}th nearest, "
                     f"a cosine match with at most {crowd.cos_ratio:g} of the cosine distance to either image's "
                     f"{crowd.k}th neighbour and pHash distance <= {crowd.cos_hamming} "
                     f"({1 - max_distinct:.0%} of distinct pairs are farther)")
    return Calibration(t, hamming, list(kinds), round(floor, 4), None if crowd is None else crowd.to_json(),
                       float(found.mean()), enc_recall, rate, by_edit,
                       len(ev.pos_cos), len(ev.neg_cos), ev.photos, how, sentence)
