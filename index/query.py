"""Query an index with images: the one path shared by the search page and `pipelines.search`.

    encoder = load_query_encoder(loaded.manifest, device="cpu")   # refuses other weights
    img = decode_query(path_or_file, encoder.cfg)    # decoded exactly as an indexed file
    img = decode_upload(data, encoder.cfg, max_bytes)  # the same, from an upload's bytes (size checked)
    search_images(loaded, encoder, [img], k)         -> per image list[Hit] (cosine, best first)
    search_indexed(loaded, rel_path, k)              -> list[Hit] (the image itself left out)
    strong_match_threshold(loaded)                   -> the score below which a result is a weak match

A query goes through the same decoding as an indexed file in `build_index` (`open_rgb` with
JPEG draft decoding at the encoder's image size, EXIF orientation, RGB conversion), then
the same resize + centre crop and the same `Encoder` (`encoders.embed`). So the same bytes give
the same vector from the page, the CLI and the index. Nothing here knows Streamlit.
"""
from __future__ import annotations

import io
import os

import faiss
import numpy as np
import torch
from PIL import Image

from encoders import embed
from encoders.embed import Encoder, EncoderConfig
from encoders.imagefolder import UnreadableImage, open_rgb
from encoders.store import load_recorded_encoder
from index.calibration import NEIGHBOUR_K
from index.store import Hit, LoadedIndex, Manifest, search_vectors


def load_query_encoder(manifest: Manifest, device="cpu", encoder_dir: str | os.PathLike | None = None) -> Encoder:
    """The encoder the index was built with; refuses another one (by content hash), dim or preprocessing."""
    return load_recorded_encoder(manifest.encoder, manifest.dim, device, encoder_dir)


def one_thread_per_query() -> None:
    """For a server answering one query image at a time: one torch and one FAISS thread per
    process. More threads gain nothing on one image, and on a loaded CPU their OpenMP barriers
    cost more than the work (docs/usage.md, Library API)."""
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)


def decode_query(source: str | os.PathLike | io.BufferedIOBase, enc: EncoderConfig) -> Image.Image:
    """A query file (path or binary file object) -> RGB image, decoded as `build_index` decodes an
    indexed file (`encoders.imagefolder.ImageFiles`). Raises UnreadableImage."""
    return open_rgb(source, draft_size=enc.image_size)


def decode_upload(data: bytes, enc: EncoderConfig, max_bytes: int) -> Image.Image:
    """An upload's bytes -> RGB image, decoded in memory exactly like an indexed file.

    Raises UnreadableImage for too many bytes, no bytes, or anything `open_rgb` refuses.
    """
    if len(data) > max_bytes:
        mb = 1024 * 1024  # the unit of streamlit's server.maxUploadSize
        raise UnreadableImage("file too large", f"{len(data) / mb:.1f} MB, over the {max_bytes / mb:g} MB limit")
    if not data:
        raise UnreadableImage("empty file")
    return decode_query(io.BytesIO(data), enc)


def embed_queries(encoder: Encoder, images: list[Image.Image]) -> np.ndarray:
    """Decoded query images -> float32 (N, D), L2-normalised, as the index's vectors were made."""
    return embed.embed_images(encoder, images)  # module attribute: tests spy on what reaches it


def search_images(loaded: LoadedIndex, encoder: Encoder, images: list, k: int = 10) -> list[list[Hit]]:
    """Query images (paths, binary files, or images from `decode_query`) -> for each, k Hits."""
    decoded = [im if isinstance(im, Image.Image) else decode_query(im, encoder.cfg) for im in images]
    return search_vectors(loaded, embed_queries(encoder, decoded), k)


def search_indexed(loaded: LoadedIndex, rel_path: str, k: int = 10) -> list[Hit]:
    """Neighbours of an image already in the index, from its stored embedding (no encoder)."""
    row = loaded.row_of(rel_path)
    return search_vectors(loaded, loaded.embeddings[row:row + 1], k, exclude_rows=[row])[0]


def strong_match_threshold(loaded: LoadedIndex, sample: int = 500, pairs: int = 20_000,
                           seed: int = 0) -> tuple[float, str]:
    """Where relevance ends on this collection: (cosine, why in plain words). A strong match is
    both closer than the NEIGHBOUR_K-th most similar other photo of a typical photo here (the median
    over `sample` photos; the neighbour the duplicates calibration, `index.calibration.kth_neighbour`,
    takes for a different picture) and closer than 99 in 100 pairs of photos picked at random
    (`pairs` of them): in a small or varied collection a photo's 10th neighbour is itself unrelated,
    in a large alike one chance pairs score high. (-1.0, "") when the collection is too small to say."""
    m = len(loaded.embeddings)
    if m <= NEIGHBOUR_K:
        return -1.0, ""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(m, min(sample, m), replace=False))
    hits = search_vectors(loaded, loaded.embeddings[rows], NEIGHBOUR_K, exclude_rows=rows.tolist())
    kth = float(np.median([h[-1].score for h in hits if len(h) == NEIGHBOUR_K]))
    a, b = rng.integers(0, m, pairs), rng.integers(0, m, pairs)
    a, b = a[a != b], b[a != b]
    chance = float(np.quantile(np.einsum("pd,pd->p", loaded.embeddings[a], loaded.embeddings[b]), 0.99))  # (P,)
    if kth >= chance:
        return kth, f"a typical photo of this collection has {NEIGHBOUR_K} others at least this alike"
    return chance, "two photos of this collection picked at random are this alike 1 time in 100"
