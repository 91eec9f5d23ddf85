"""The encoder a user loads, one `nn.Module`: preprocessing + backbone + whitening (identity
when off), uint8 images -> L2-normalised float32 representations h (not projections z).

    encoder = Encoder(backbone, cfg)                  # cfg: EncoderConfig (preprocessing, sizes)
    encoder = encoder.with_whitening(images)          # a copy, PCA-whitening fitted on its embeddings
    h = encoder(uint8 (N, 3, S, S))                   # (N, cfg.dim): read-out of the feature map, whitened
    embed_tensor(encoder, images) / embed_images(encoder, paths_or_files)   # in batches, numpy

Saved and loaded in one place, `encoders.store` (save_encoder / load_encoder).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoders.augment import IMAGENET_MEAN, IMAGENET_STD, normalize_batch
from encoders.runtime import autocast
from encoders.typed_json import typed_fields
from encoders.whitening import Whitening, fit_whitening

PREPROCESSING = ("backbone", "small_stem", "feat_dim", "image_size", "mean", "std", "normalize", "flip_average",
                 "grey_average", "whiten", "readout", "whiten_dim")  # what shapes an embedding
READOUTS = {"avg": 1, "grid": 4}  # read-out -> regions of the feature map it concatenates


@dataclass(frozen=True)
class EncoderConfig:
    """How to rebuild a backbone and preprocess an image for it."""

    backbone: str = "resnet18"
    small_stem: bool = False
    feat_dim: int = 512
    image_size: int = 32  # shorter side resized to this, then centre crop (bicubic)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    method: str = ""
    training: dict = field(default_factory=dict)  # the pretraining config, for the record
    normalize: str = "dataset"  # input standardisation: "dataset" mean/std, or "luma" (each image's own)
    flip_average: bool = False  # embedding = mean of the image's and its mirror's (exactly mirror-invariant)
    grey_average: bool = False  # ... and of their greyscale versions (a grey copy shares half the embedding)
    whiten: bool = False  # PCA-whitening fitted on the training collection (encoders.whitening), in the weights
    # how the backbone's last feature map becomes a vector: "avg" = global average (what it was trained
    # with; configs saved without the field mean it); "grid" = averages over its 2x2 quadrants, concatenated
    readout: str = "avg"
    whiten_dim: int = 0  # with whiten: keep this many principal axes (0: all)

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise ValueError(f"read-out {self.readout!r}: choose one of {', '.join(READOUTS)}")
        if not 0 <= self.whiten_dim <= self.readout_dim:
            raise ValueError(f"whiten_dim {self.whiten_dim}: between 0 and the read-out's {self.readout_dim}")

    @property
    def readout_dim(self) -> int:
        return self.feat_dim * READOUTS[self.readout]

    @property
    def dim(self) -> int:
        """Dimension of the embeddings this encoder gives (what an index stores)."""
        return self.whiten_dim if self.whiten and self.whiten_dim else self.readout_dim

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        """From parsed JSON, every field checked against its annotation; raises ValueError naming the first bad one."""
        return cls(**typed_fields(cls, d))


class Encoder(nn.Module):
    """forward(uint8 (N, 3, S, S)) -> float32 (N, D), L2-normalised, on the encoder's device.

    Test-time averaging, each one batched pass: with `cfg.flip_average` the representation
    is the mean over the image and its mirror image, so a mirrored copy embeds identically;
    with `cfg.grey_average` also over their greyscale versions, so a greyscale copy shares
    half of the original's representation exactly. `whiten` (a `Whitening` fitted on the
    training collection when `cfg.whiten`, else the identity) maps the L2-normalised average,
    which is normalised again."""

    def __init__(self, backbone: nn.Module, cfg: EncoderConfig, whitening: Whitening | None = None):
        super().__init__()
        if whitening is not None and not cfg.whiten:
            raise ValueError("a whitening was given for a config with whiten=False")
        self.backbone, self.cfg = backbone, cfg
        # with cfg.whiten and none given: an empty whitening, filled by load_state_dict
        if whitening is None:
            whitening = Whitening(cfg.readout_dim, cfg.dim) if cfg.whiten else nn.Identity()
        self.whiten = whitening

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @torch.no_grad()
    def forward(self, images: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        cfg, device = self.cfg, self.device
        x = images.to(device, non_blocking=True)
        views = [x, x.flip(3)] if cfg.flip_average else [x]  # each (N, 3, S, S)
        if cfg.grey_average:
            views += [rgb_to_grey_uint8(v) for v in views]
        h = 0
        for v in views:  # one view at a time: the forward pass holds N images, not V N
            v = normalize_batch(v, cfg.mean, cfg.std, cfg.normalize).contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                h = h + read_out(self.backbone, v, cfg.readout).float()  # (N, D)
        h = F.normalize(h / len(views), dim=1)  # (N, D): the mean over the views
        if isinstance(self.whiten, nn.Identity):
            return h
        return F.normalize(self.whiten(h), dim=1)  # (N, D)

    def with_whitening(self, images: torch.Tensor) -> "Encoder":
        """A new encoder on a frozen copy of this backbone, with PCA-whitening fitted on its
        (unwhitened) embeddings of uint8 (M, 3, S, S) `images`; this one is left as it is."""
        plain = Encoder(copy.deepcopy(self.backbone).eval(), replace(self.cfg, whiten=False))
        whitening = fit_whitening(torch.from_numpy(embed_tensor(plain, images)), out_dim=self.cfg.whiten_dim or None)
        return Encoder(plain.backbone, replace(self.cfg, whiten=True), whitening).to(self.device)


def read_out(backbone: nn.Module, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Normalised images (N, 3, S, S) -> (N, R D) from the backbone's last feature map (N, D, h, w):
    "avg" its global average, the backbone's own output (R = 1); "grid" the averages over its 2x2
    quadrants, concatenated (R = 4). A regional read-out keeps where things are in the picture,
    which the global average discards (R-MAC, Tolias et al. 2016, pools regions for the same
    reason); what it changes for clustering and search: bench/results/readout.json."""
    if kind == "avg":
        return backbone(x)  # (N, D)
    return F.adaptive_avg_pool2d(backbone.feature_map(x), 2).flatten(1)  # (N, D, 2, 2) -> (N, 4 D)


def rgb_to_grey_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> its greyscale version, uint8 (N, 3, S, S) with equal channels
    (ITU-R 601 luma, as PIL's and torchvision's greyscale)."""
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    luma = (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)  # (N, 1, S, S)
    return luma.expand(-1, 3, -1, -1)


def embed_tensor(encoder: Encoder, images: torch.Tensor, batch_size: int = 512,
                 precision: str = "fp32") -> np.ndarray:
    """uint8 (M, 3, S, S) already decoded -> float32 (M, D) numpy, L2-normalised."""
    encoder.eval()
    out = [encoder(images[i:i + batch_size], precision).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def embed_images(encoder: Encoder, images, batch_size: int = 64, precision: str = "fp32") -> np.ndarray:
    """Query images -> float32 (N, D) numpy, L2-normalised, exactly as indexed images are.

    `images`: paths, binary file objects (e.g. an upload) or PIL images. Paths and files go
    through `open_rgb` (EXIF orientation, RGB, JPEG draft) like the indexing DataLoader;
    PIL images get EXIF orientation and RGB conversion. Raises UnreadableImage.
    """
    from encoders.imagefolder import decode_images

    batch = decode_images(images, encoder.cfg.image_size)
    if not len(batch):
        return np.empty((0, encoder.cfg.dim), np.float32)
    return embed_tensor(encoder, batch, batch_size, precision)
