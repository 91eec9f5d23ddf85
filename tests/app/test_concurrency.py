"""Many users at once: searches share one loaded index and encoder (as the app's
st.cache_resource does) and every answer must equal the single-user answer."""
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from encoders.embed import embed_images
from encoders.store import load_recorded_encoder
from index.store import load_index, search_vectors

USERS = 8
SECONDS = 3.0
K = 5


def answer(loaded, encoder, path):
    hits = search_vectors(loaded, embed_images(encoder, [path]), K)[0]
    # equal scores (an exact copy scores 1.0 twice) may come in either order: sort ties by name
    return sorted(((round(h.score, 4), h.path) for h in hits), key=lambda t: (-t[0], t[1]))


def test_concurrent_users_get_single_user_answers(app_index):
    loaded = load_index(app_index, use_gpu=False)
    encoder = load_recorded_encoder(loaded.manifest.encoder, loaded.manifest.dim)
    paths = [loaded.absolute(it.path) for it in loaded.manifest.items]
    expected = {p: answer(loaded, encoder, p) for p in paths}
    params_before = type(loaded.index).__name__, loaded.index.ntotal

    def user(seed):
        rng = random.Random(seed)
        done, wrong = 0, []
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            p = rng.choice(paths)
            got = answer(loaded, encoder, p)
            if [q for _, q in got] != [q for _, q in expected[p]] or any(
                    abs(a - b) > 1e-3 for (a, _), (b, _) in zip(got, expected[p])):
                wrong.append((str(p), got, expected[p]))
            done += 1
        return done, wrong

    with ThreadPoolExecutor(USERS) as pool:
        results = list(pool.map(user, range(USERS)))
    assert all(done >= 1 for done, _ in results), results
    wrong = [w for _, ws in results for w in ws]
    assert not wrong, wrong[:3]
    assert (type(loaded.index).__name__, loaded.index.ntotal) == params_before
    print(f"{sum(d for d, _ in results)} queries from {USERS} concurrent users, all equal to single-user answers")


@pytest.mark.parametrize("k", [1, 7])
def test_indexed_searches_concurrently(app_index, k):
    loaded = load_index(app_index, use_gpu=False)
    rows = list(range(len(loaded.embeddings)))
    single = [search_vectors(loaded, loaded.embeddings[r:r + 1], k)[0] for r in rows]
    with ThreadPoolExecutor(USERS) as pool:
        many = list(pool.map(lambda r: search_vectors(loaded, loaded.embeddings[r:r + 1], k)[0], rows * 4))
    for i, hits in enumerate(many):
        assert [h.id for h in hits] == [h.id for h in single[i % len(rows)]]
