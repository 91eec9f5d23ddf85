import itertools
import math

import numpy as np
import pytest
from PIL import Image, ImageOps

from index.phash import (
    HASH_KINDS,
    HashCache,
    hamming,
    hash_pairs,
    image_hashes,
    kth_hamming,
    load_or_compute,
    min_hamming,
    phash,
    phash_pairs,
    trim_borders,
)


def naive_phash(img: Image.Image) -> int:
    """pHash written out with loops: 32x32 grey, DCT-II by its definition, 8x8, median of the 63 AC terms."""
    g = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    coef = [[sum(g[y, x] * math.cos(math.pi * v * (2 * y + 1) / 64) * math.cos(math.pi * u * (2 * x + 1) / 64)
                 for y in range(32) for x in range(32)) for u in range(8)] for v in range(8)]
    flat = [c for row in coef for c in row]
    med = float(np.median(flat[1:]))
    out = 0
    for c in flat:  # the first coefficient is the most significant bit
        out = (out << 1) | int(c >= med)
    return out


def photo(seed: int, size=(96, 64)) -> Image.Image:
    """A smooth random picture (low frequencies dominate, as in photos)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phash_equals_the_definition(seed):
    img = photo(seed)
    assert int(phash(img)) == naive_phash(img)


def test_mirror_and_trimmed_hashes():
    img = photo(3, (120, 80))
    h = image_hashes(img)
    assert h.dtype == np.uint64 and h.shape == (len(HASH_KINDS),)
    m = image_hashes(ImageOps.mirror(img))
    assert m[0] == h[1] and m[1] == h[0]  # the mirror's plain hash is the original's mirror hash
    framed = Image.new("RGB", (200, 160), (0, 0, 0))
    framed.paste(img, (40, 40))
    assert trim_borders(framed).size == (120, 80)
    assert hamming(image_hashes(framed)[2], h[2]) <= 2 < hamming(image_hashes(framed)[0], h[0])
    phone = Image.new("RGB", (120, 260), (0, 0, 0))  # a screenshot: status bar with icons, letterbox, nav bar
    phone.paste(img, (0, 90))
    phone.paste((40, 40, 40), (0, 0, 120, 12))
    for x in (4, 90, 104):
        phone.paste((230, 230, 230), (x, 4, x + 8, 8))
    phone.paste((40, 40, 40), (0, 244, 120, 260))
    phone.paste((230, 230, 230), (55, 248, 65, 256))
    w, h = trim_borders(phone).size
    assert w == 120 and abs(h - 80) <= 3  # found on a 256 px copy: a line or two of rounding
    assert trim_borders(img).size == img.size  # a picture without borders is left whole


def brute_pairs(h, radius, other=None):
    other = h if other is None else other
    out = []
    for a, b in itertools.combinations(range(len(h)), 2):
        d = min(bin(int(h[a]) ^ int(other[b])).count("1"), bin(int(h[b]) ^ int(other[a])).count("1"))
        if d <= radius:
            out.append((a, b, d))
    return out


@pytest.mark.parametrize("radius", [0, 5, 24])
@pytest.mark.parametrize("with_other", [False, True])
def test_hash_pairs_equal_brute_force(radius, with_other):
    rng = np.random.default_rng(radius)
    h = rng.integers(0, 2 ** 63, 300, dtype=np.uint64) | (rng.integers(0, 2, 300, dtype=np.uint64) << np.uint64(63))
    h[7], h[9] = h[3] ^ np.uint64(0b1011), h[3]  # planted: distance 3 and 0
    other = h ^ rng.integers(0, 2 ** 62, 300, dtype=np.uint64) if with_other else None
    a, b, d = hash_pairs(h, radius, other, batch=64)
    assert list(zip(a.tolist(), b.tolist(), d.tolist())) == brute_pairs(h, radius, other)


@pytest.mark.parametrize("kinds", [("plain",), HASH_KINDS])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_kth_hamming_equals_brute_force(kinds, k):
    rng = np.random.default_rng(k)
    h = rng.integers(0, 2 ** 63, (300, 4), dtype=np.uint64)
    h[50:80] = h[0] ^ rng.integers(0, 2 ** 8, (30, 4), dtype=np.uint64)  # a crowd of near-twins
    h[100:110, 1] = h[0, 0] ^ np.uint64(3)  # mirror images of row 0
    rows = np.arange(0, 300, 7)
    dist = min_hamming(np.repeat(h[rows], 300, 0), np.tile(h, (len(rows), 1)), kinds).reshape(len(rows), 300)
    dist[np.arange(len(rows)), rows] = 99  # not itself
    np.testing.assert_array_equal(kth_hamming(h, k, kinds, rows), np.sort(dist, axis=1)[:, k - 1])
    assert (kth_hamming(h[:5], 5, kinds) == 65).all()  # fewer than k others: farther than any distance


def test_phash_pairs_take_the_best_kind():
    rng = np.random.default_rng(5)
    h = rng.integers(0, 2 ** 63, (200, 4), dtype=np.uint64)
    a, b, d = phash_pairs(h, 26, HASH_KINDS)
    every = np.array(list(itertools.combinations(range(200), 2)))
    best = min_hamming(h[every[:, 0]], h[every[:, 1]], HASH_KINDS)
    want = every[best <= 26]
    np.testing.assert_array_equal(np.stack([a, b], 1), want)
    np.testing.assert_array_equal(d, best[best <= 26])
    ref = [min(hamming(h[i, 0], h[j, 0]), hamming(h[i, 0], h[j, 1]), hamming(h[i, 1], h[j, 0]),
               hamming(h[i, 2], h[j, 2]), hamming(h[i, 2], h[j, 3]), hamming(h[i, 3], h[j, 2])) for i, j in every[:50]]
    np.testing.assert_array_equal(best[:50], ref)


def test_cache_is_filled_once_and_keyed_by_content(tmp_path):
    files = []
    for i in range(4):
        files.append(tmp_path / f"p{i}.png")
        photo(i).save(files[-1])
    (tmp_path / "gone.png").write_bytes(b"x")
    shas = [f"{i:064x}" for i in range(4)] + ["f" * 64]
    ok, h, px = load_or_compute(tmp_path, files + [tmp_path / "gone.png"], shas)
    assert ok.tolist() == [True] * 4 + [False] and (px[:4] == 96 * 64).all()
    assert all(h[i, 0] == phash(Image.open(f)) for i, f in enumerate(files))
    for f in files:
        f.unlink()  # from now on only the cache can answer
    ok2, h2, _ = load_or_compute(tmp_path, files, shas[:4])
    assert ok2.all() and (h2 == h[:4]).all()
    assert len(HashCache.read(tmp_path).sha256) == 4


def test_plain_and_striped_pictures_are_not_trimmed_away():
    assert trim_borders(Image.new("RGB", (50, 40), (9, 9, 9))).size == (50, 40)
    stripes = Image.fromarray(np.repeat(np.arange(0, 250, 5, dtype=np.uint8)[None, :], 40, 0))  # plain columns
    assert trim_borders(stripes.convert("RGB")).size == (50, 40)
    image_hashes(stripes.convert("RGB"))
