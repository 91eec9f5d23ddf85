"""Shift averaging inside the encoder, as its flip and greyscale averaging work: the read-out is
averaged over the encoder's views plus four copies of the image shifted by 1/16 of its side (border
repeated), before the whitening. Each run's encoder with it off and on, the whitening refitted the
same way for both on a seeded sample of the run's training images (as pretraining does), then the
labelled collection clustered by the default at its true K and with the automatic K.

    python bench/results/tta/shift_probe.py OUT.jsonl COLLECTION=RUN [COLLECTION=RUN ...]
"""
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.augment import normalize_batch  # noqa: E402
from encoders.embed import Encoder, embed_tensor, read_out, rgb_to_grey_uint8  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from encoders.imagefolder import decode_images, scan_images  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from encoders.whitening import fit_whitening  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402
from pipelines.pretrain import WHITEN_SAMPLE  # noqa: E402

SHIFT = 1 / 16  # of the image side: 2 px at 32


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """uint8 (N, C, S, S) moved down by dy and right by dx pixels, the border pixels repeated."""
    p, s = max(abs(dy), abs(dx)), x.shape[-1]
    padded = F.pad(x.float(), (p, p, p, p), mode="replicate")  # (N, C, S + 2p, S + 2p)
    return padded[:, :, p - dy:p - dy + s, p - dx:p - dx + s].to(torch.uint8)


class ShiftAveraged(Encoder):
    """Encoder.forward with four shifted copies of the image among the averaged views."""

    @torch.no_grad()
    def forward(self, images: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        cfg, x = self.cfg, images.to(self.device)
        views = [x, x.flip(3)] if cfg.flip_average else [x]
        if cfg.grey_average:
            views += [rgb_to_grey_uint8(v) for v in views]
        d = max(1, round(x.shape[-1] * SHIFT))
        views += [shifted(x, dy, dx) for dy, dx in ((-d, 0), (d, 0), (0, -d), (0, d))]
        h = sum(read_out(self.backbone, normalize_batch(v, cfg.mean, cfg.std, cfg.normalize).contiguous(
            memory_format=torch.channels_last), cfg.readout) for v in views)  # as Encoder.forward
        h = F.normalize(h / len(views), dim=1)
        return F.normalize(self.whiten(h), dim=1) if cfg.whiten else h


def refitted(kind, backbone, cfg, sample: torch.Tensor) -> Encoder:
    """`kind` (Encoder or ShiftAveraged) with its whitening fitted on its own embeddings of `sample`."""
    plain = kind(backbone, replace(cfg, whiten=False))
    return kind(backbone, cfg, fit_whitening(torch.from_numpy(embed_tensor(plain, sample))))


def training_sample(run: Path, size: int) -> torch.Tensor:
    """uint8 (<= WHITEN_SAMPLE, 3, size, size): a seeded sample of the run's training folder."""
    folder = json.loads((run / "config.json").read_text())["training"]["data"]
    files = scan_images(ROOT / folder)
    pick = np.sort(np.random.default_rng(0).permutation(len(files))[:WHITEN_SAMPLE])
    return decode_images([files[i] for i in pick], size)


args = sys.argv[1:]
out = Path(args[0])
for arg in args[1:]:
    name, run = arg.split("=", 1)
    trained = load_encoder(Path(run), torch.device("cpu"))
    sample = training_sample(Path(run), trained.cfg.image_size)
    images, y = datasets.labelled_images(name, trained.cfg.image_size)
    k = len(np.unique(y))
    for on in (False, True):
        t0 = time.perf_counter()
        encoder = refitted(ShiftAveraged if on else Encoder, trained.backbone, trained.cfg, sample)
        x = embed_tensor(encoder, images)
        row = {"collection": name, "run": run, "shift_average": on, "embed_seconds": round(time.perf_counter() - t0, 1)}
        for given in (k, None):
            res = cluster_collection(x, given, ClusterSettings(stability_runs=0))
            scores = {m: round(float(v), 4) for m, v in cluster_scores(y, res.clustering.labels).items()}
            row["true_k" if given else "automatic_k"] = {**scores, "k": res.k, "made_by": res.made_by}
        datasets.append_json_line(out, row)
