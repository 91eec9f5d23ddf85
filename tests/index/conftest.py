import numpy as np


def clustered(n: int, d: int, centres: int, spread: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around `centres` random directions: (float32 (n, d), labels (n,))."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    labels = rng.integers(0, centres, n)
    x = c[labels] + spread * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def paired_groups(pairs: int, per: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in 2 * `pairs` tight groups of `per`, the two groups of a pair near each other:
    1.5-3% of an image's 15 nearest neighbours lie in the other group of its pair (seeds 0-3), none further."""
    rng = np.random.default_rng(seed)
    pair = rng.standard_normal((pairs, 32))
    group = np.repeat(pair / np.linalg.norm(pair, axis=1, keepdims=True), 2, 0)
    side = rng.standard_normal((2 * pairs, 32))
    group += 0.3 * side / np.linalg.norm(side, axis=1, keepdims=True)
    labels = np.repeat(np.arange(2 * pairs), per)
    x = group[labels] / np.linalg.norm(group[labels], axis=1, keepdims=True)
    x += 0.3 * rng.standard_normal(x.shape) / np.sqrt(32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels
