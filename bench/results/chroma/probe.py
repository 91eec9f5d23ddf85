"""Would a colour-palette feature beside the learned embedding group real photos better? The
default encoder is taught to ignore colour (search must find greyscale copies), while several
shots of one scene share its palette. Each image's chroma histogram (8x8 bins over YCbCr's Cb and
Cr, square-rooted, minus the collection's mean, unit length) is joined to the learned embedding
with weight w (a pair's cosine becomes (learned + w^2 chroma) / (1 + w^2)); greyscale images all
have the same histogram, so on a greyscale collection the feature is zero and changes nothing.
Clustered by the default at the true K and with the automatic K.

    python bench/results/chroma/probe.py OUT.jsonl [--hue-shift] COLLECTION=RUN [COLLECTION=RUN ...]

--hue-shift turns each image's hues by a random amount first (seeded; torchvision's adjust_hue, up to
half a turn either way), so that a group's images no longer share a palette: the case of a
collection grouped by subject, where colour says little, to see what the feature costs there.
"""
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.store import load_encoder  # noqa: E402

BINS = 8


def chroma(images: torch.Tensor) -> np.ndarray:
    """uint8 (M, 3, S, S) -> float32 (M, BINS^2): centred square-rooted Cb/Cr histograms, unit length
    (rows that are all zero stay zero)."""
    x = images.float()
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    cb = (128 - 0.168736 * r - 0.331264 * g + 0.5 * b).round()  # (M, S, S), ITU-R 601, as JPEG stores it
    cr = (128 + 0.5 * r - 0.418688 * g - 0.081312 * b).round()  # grey pixels: exactly 128, one bin
    bins = (cb.clamp(0, 255.99) * BINS / 256).long() * BINS + (cr.clamp(0, 255.99) * BINS / 256).long()
    h = torch.zeros(len(x), BINS * BINS).scatter_add_(1, bins.flatten(1), torch.ones_like(bins.flatten(1),
                                                                                          dtype=torch.float))
    h = (h / h.sum(1, keepdim=True)).sqrt().numpy()
    h -= h.mean(0, keepdims=True)
    n = np.linalg.norm(h, axis=1, keepdims=True)
    return np.where(n > 1e-6, h / np.maximum(n, 1e-6), 0).astype(np.float32)


def hue_shifted(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    turns = np.random.default_rng(seed).uniform(-0.5, 0.5, len(images))
    return torch.stack([TF.adjust_hue(im, float(t)) for im, t in zip(images, turns)])


args = sys.argv[1:]
out = Path(args.pop(0))
shift = args[0] == "--hue-shift"
for arg in args[shift:]:
    name, run = arg.split("=", 1)
    encoder = load_encoder(Path(run), torch.device("cpu"))
    images, y = datasets.labelled_images(name, encoder.cfg.image_size)
    if shift:
        images = hue_shifted(images)
    learned, c = embed_tensor(encoder, images), chroma(images)
    k = len(np.unique(y))
    for w in (0.0, 0.5, 1.0):
        x = np.hstack([learned, w * c])
        row = {"collection": name, "run": run, "hue_shift": shift, "weight": w,
               "chroma_norm_mean": round(float(np.linalg.norm(c, axis=1).mean()), 3)}
        for given in (k, None):
            row["true_k" if given else "automatic_k"] = datasets.default_scores(x, y, given)
        datasets.append_json_line(out, row)
