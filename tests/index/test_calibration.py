import numpy as np
import pytest
from PIL import Image

from encoders.copies import DUPLICATE_EDITS
from index.calibration import Evidence, calibrate, choose_threshold, crowding_margins, edited_pairs
from index.phash import image_hashes


def rates(t, pos_cos, pos_hit, neg_cos, neg_hit):
    """Recall of the rule, and the distinct pairs its cosine adds to the hash's."""
    return (pos_hit | (pos_cos >= t)).mean(), (~neg_hit & (neg_cos >= t)).mean()


@pytest.mark.parametrize("seed", range(6))
def test_choose_threshold_meets_both_goals_or_favours_distinct_pairs(seed):
    rng = np.random.default_rng(seed)
    pos = rng.normal(0.8 - 0.06 * seed, 0.1, 400).astype(np.float32)
    neg = rng.normal(0.4, 0.12, 300).astype(np.float32)
    pos_hit, neg_hit = rng.random(400) < 0.3, rng.random(300) < 0.003
    t, how = choose_threshold(pos, pos_hit, neg, neg_hit, 0.95, 0.02)
    grid = np.unique(np.concatenate([pos, neg, np.nextafter(neg, np.float32(2)), [1.0]]))  # every distinct rule
    ok_both = [g for g in grid if rates(g, pos, pos_hit, neg, neg_hit)[0] >= 0.95
               and rates(g, pos, pos_hit, neg, neg_hit)[1] <= 0.02]
    recall, flagged = rates(t, pos, pos_hit, neg, neg_hit)
    assert flagged <= 0.02  # never more distinct pairs than allowed
    if ok_both:  # a rule meeting both exists: the chosen one lies between the extremes of those rules
        assert recall >= 0.95 and min(ok_both) <= t <= max(ok_both) and "half way" in how
    else:  # the lowest threshold allowed by the distinct pairs
        lowest = min(g for g in grid if rates(g, pos, pos_hit, neg, neg_hit)[1] <= 0.02)
        assert t == pytest.approx(lowest) and "lowest" in how


def test_choose_threshold_refuses_bad_goals():
    x = np.zeros(3, np.float32)
    with pytest.raises(ValueError):
        choose_threshold(x, x > 0, x, x > 0, 1.5, 0.01)


def test_calibrate_counts_hash_hits_and_explains():
    rng = np.random.default_rng(0)
    n = 60
    ha = rng.integers(0, 2 ** 63, (n, 4), dtype=np.uint64)
    hb = ha.copy()
    hb[: n // 2] ^= np.uint64(0b111)  # half the copies: pHash distance 3; the rest: 16, beyond the hash
    hb[n // 2:] ^= np.uint64(0xFFFF)
    pos_cos = np.r_[np.full(n // 2, 0.1), np.linspace(0.6, 0.9, n - n // 2)].astype(np.float32)
    ev = Evidence(pos_cos, ha, hb, np.array(["a", "b"] * (n // 2)), np.linspace(0.0, 0.5, 40).astype(np.float32),
                  rng.integers(0, 2 ** 63, (40, 4), dtype=np.uint64),
                  rng.integers(0, 2 ** 63, (40, 4), dtype=np.uint64),
                  n)
    cal = calibrate(ev, 10, ("plain",), 0.95, 0.0)
    assert 0.5 < cal.threshold <= 0.6 and cal.recall == 1.0 and cal.distinct_rate == 0.0
    assert cal.encoder_recall == pytest.approx(0.5) and "threshold" in cal.sentence and "50%" in cal.sentence
    alone = calibrate(ev, None, ("plain",), 0.95, 0.0)
    assert alone.recall == pytest.approx(0.5) and alone.threshold >= 0.5  # without the hash the low copies are lost


def photo_like() -> Image.Image:
    return Image.fromarray(np.arange(64 * 3, dtype=np.uint8).reshape(8, 8, 3))


def test_edited_pairs_score_every_edit_of_every_readable_photo(tmp_path):
    files = []
    for i in range(5):
        rng = np.random.default_rng(i)
        files.append(tmp_path / f"{i}.png")
        small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
        small.resize((160, 120), Image.BICUBIC).save(files[-1])
    files.append(tmp_path / "broken.png")
    files[-1].write_bytes(b"nope")

    def embed(images):  # raw 8x8 grey pixels, mean removed: a stand-in encoder
        v = np.stack([np.asarray(im.convert("L").resize((8, 8)), np.float32).ravel() for im in images])
        v -= v.mean(1, keepdims=True)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    x = embed([Image.open(f) for f in files[:5]] + [photo_like()])
    phashes = np.stack([image_hashes(Image.open(f).convert("RGB")) for f in files[:5]] + [np.zeros(4, np.uint64)])
    ev = edited_pairs(files, np.arange(6), x, phashes, embed, seed=0, chunk=4)
    assert ev.photos == 5 and len(ev.pos_cos) == 5 * len(DUPLICATE_EDITS) and len(ev.neg_cos) == 5
    assert sorted(set(ev.pos_edit)) == sorted(DUPLICATE_EDITS)
    grey = ev.pos_edit == "grey"  # a greyscale copy has the same grey pixels: cosine ~1, same pHash
    assert (ev.pos_cos[grey] > 0.99).all() and (ev.pos_hash_a[grey, 0] == ev.pos_hash_b[grey, 0]).all()


def test_threshold_never_below_how_close_distinct_neighbours_get():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # 300 points in 8-d: dense, every 10th neighbour is close
    from index.crowding import kth_neighbour
    rows = np.arange(0, 300, 3)
    kth = kth_neighbour(x, rows)
    ref = np.sort(x[rows] @ x.T, axis=1)[:, -11]  # brute force: 11th largest (itself first)
    np.testing.assert_allclose(kth, ref, atol=1e-5)
    z = np.zeros((50, 4), np.uint64)
    ev = Evidence(np.full(50, 0.5, np.float32), z, z + np.uint64(2 ** 40 - 1), np.array(["a"] * 50),
                  np.full(50, 0.1, np.float32), z, z + np.uint64(2 ** 40 - 1), 50, kth)
    cal = calibrate(ev, None, ("plain",), 0.95, 0.01)
    assert cal.threshold == pytest.approx(np.quantile(kth, 0.99), abs=1e-4) and cal.threshold > 0.5
    assert "raised from" in cal.how


def test_crowding_margins_from_the_edited_and_distinct_pairs():
    pos = np.r_[np.arange(0, 10), np.full(10, 40)]  # the hash finds 10 copies (0..9 bits), misses 10
    neg = np.arange(12, 112)  # 100 distinct pairs, 12..111 bits
    c = crowding_margins(pos, neg, hamming=10, max_distinct=0.01)
    assert c.hash_margin == int(np.ceil(np.quantile(np.arange(10), 0.95)))  # 95% of found copies move it <= 9
    assert c.cos_hamming == 12  # 1% of distinct pairs lie below 13
    assert crowding_margins(np.full(5, 40), neg, 10, 0.01).hash_margin == 10  # nothing found: the radius
