"""SimCLR augmentations, two ways with one recipe.

- `SimCLRTransform`: torchvision `transforms.v2`, one PIL image -> list of 2 float
  tensors (3, S, S). The readable reference; use it in DataLoader workers.
- `BatchSimCLRAugment`: the same recipe on a whole uint8 batch (N, 3, H, W) at once,
  every sample with its own random parameters, on the batch's device. Much cheaper
  than per-image PIL on CPU (bench/train_step_speed.py; bench/results/train_step_speed.json).
- `BatchMultiCrop`: `ViewSpec.n_global` views at the image size plus `n_local` small
  crops (SwAV / DINO multi-crop), each a `BatchSimCLRAugment` call: a list of tensors.

Recipe (Chen et al. 2020, appendix A): random resized crop (scale 0.08-1, ratio 3/4-4/3)
+ horizontal flip p=0.5; colour jitter (0.4, 0.4, 0.4, 0.1) with p=0.8, ops in random
order; greyscale p=0.2; Gaussian blur p=0.5, kernel ~10% of the image, sigma 0.1-2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AugmentConfig:
    image_size: int = 32
    min_scale: float = 0.08
    max_scale: float = 1.0
    jitter_strength: float = 1.0  # scales (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grey_p: float = 0.2
    blur_p: float = 0.5
    flip_p: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    normalize: str = "dataset"  # "dataset": (x - mean) / std; "luma": by each image's own luma (see standardize)

    @property
    def jitter(self) -> tuple[float, float, float, float]:
        s = self.jitter_strength
        return 0.4 * s, 0.4 * s, 0.4 * s, 0.1 * s

    @property
    def blur_kernel(self) -> int:
        k = max(3, int(0.1 * self.image_size))
        return k + 1 - k % 2  # odd


class SimCLRTransform:
    """PIL image -> [view_a, view_b], each a normalised float (3, S, S) tensor."""

    def __init__(self, cfg: AugmentConfig):
        b, c, s, h = cfg.jitter
        self.view = v2.Compose([
            v2.ToImage(),
            v2.RandomResizedCrop(cfg.image_size, scale=(cfg.min_scale, cfg.max_scale), antialias=True),
            v2.RandomHorizontalFlip(cfg.flip_p),
            v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=cfg.jitter_p),
            v2.RandomGrayscale(cfg.grey_p),
            v2.RandomApply([v2.GaussianBlur(cfg.blur_kernel, sigma=(0.1, 2.0))], p=cfg.blur_p),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(cfg.mean, cfg.std),
        ])

    def __call__(self, img) -> list[torch.Tensor]:
        return [self.view(img), self.view(img)]


# ---- batched, per-sample colour ops on float images in [0, 1], shape (N, 3, H, W) ----

def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, as torchvision's rgb_to_grayscale: (N, 3, H, W) -> (N, 1, H, W)."""
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), f)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    return _blend(x, mean, f)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grey(x), f)


def adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Rotate hue by f (in turns, |f| <= 0.5) per sample, through HSV like torchvision."""
    r, g, b = x.unbind(1)  # each (N, H, W)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    eqc = maxc == minc
    cr = maxc - minc
    s = cr / torch.where(eqc, torch.ones_like(maxc), maxc)
    cr_div = torch.where(eqc, torch.ones_like(cr), cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    h = torch.remainder(h + f.view(-1, 1, 1), 1.0) * 6.0  # hue in sextants, [0, 6)
    # HSV -> RGB in closed form: channel(n) = V - V*S*clamp(min(k, 4 - k), 0, 1),
    # k = (n + H) mod 6 with n = 5, 3, 1 for R, G, B.
    vs = maxc * s
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(h + n, 6.0)
        out.append(maxc - vs * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0))
    return torch.stack(out, dim=1)  # (N, 3, H, W)


_COLOUR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


class BatchSimCLRAugment:
    """uint8 (N, 3, H, W) -> one augmented, normalised float (N, 3, S, S) view.

    Every sample draws its own crop, flip, jitter factors and order, greyscale and blur.
    Randomness comes only from the `torch.Generator` passed in, so a run is reproducible
    from (seed, step). Call twice for the two views.
    """

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def crop_flip(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Random resized crop + flip as one batched affine resample: (N,3,H,W) -> (N,3,S,S)."""
        n, _, h, w = x.shape
        cfg, dev = self.cfg, x.device
        # torchvision's RandomResizedCrop: area ~ U(scale), log-ratio ~ U(log 3/4, log 4/3);
        # 10 tries, then fall back to the whole image clipped to the ratio range.
        tries = 10
        area = _uniform(n * tries, cfg.min_scale, cfg.max_scale, g, dev).view(n, tries) * (h * w)
        logr = _uniform(n * tries, math.log(3 / 4), math.log(4 / 3), g, dev).view(n, tries)
        ratio = torch.exp(logr)
        cw = torch.sqrt(area * ratio).round()
        ch = torch.sqrt(area / ratio).round()
        fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1, device=dev))
        pick = first.clamp(min=0).unsqueeze(1)
        cw = cw.gather(1, pick).squeeze(1)
        ch = ch.gather(1, pick).squeeze(1)
        fallback = first < 0
        cw = torch.where(fallback, torch.full_like(cw, float(w)), cw)
        ch = torch.where(fallback, torch.full_like(ch, float(h)), ch)
        x0 = torch.floor(torch.rand(n, generator=g, device=dev) * (w - cw + 1))
        y0 = torch.floor(torch.rand(n, generator=g, device=dev) * (h - ch + 1))
        x0 = torch.where(fallback, torch.zeros_like(x0), x0)
        y0 = torch.where(fallback, torch.zeros_like(y0), y0)
        flip = torch.rand(n, generator=g, device=dev) < cfg.flip_p
        # normalised coordinates (align_corners=False): pixel edge -1 .. +1
        sx = cw / w
        sy = ch / h
        tx = (2 * x0 + cw) / w - 1
        ty = (2 * y0 + ch) / h - 1
        theta = torch.zeros(n, 2, 3, device=dev)
        theta[:, 0, 0] = torch.where(flip, -sx, sx)
        theta[:, 0, 2] = tx
        theta[:, 1, 1] = sy
        theta[:, 1, 2] = ty
        s = cfg.image_size
        grid = F.affine_grid(theta, [n, 3, s, s], align_corners=False)  # (N, S, S, 2)
        # Downscaling crops by >2x aliases without a low-pass first; area-resize the
        # source so the sampled crop is at most ~2x the output size.
        shrink = max(1, min(h, w) // (2 * s))
        if shrink > 1:
            x = F.avg_pool2d(x, shrink, ceil_mode=True)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def colour(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, dev, cfg = x.shape[0], x.device, self.cfg
        b, c, s, h = cfg.jitter
        factors = torch.stack([
            _uniform(n, max(0.0, 1 - b), 1 + b, g, dev),
            _uniform(n, max(0.0, 1 - c), 1 + c, g, dev),
            _uniform(n, max(0.0, 1 - s), 1 + s, g, dev),
            _uniform(n, -h, h, g, dev),
        ], dim=1)  # (N, 4)
        apply = torch.rand(n, generator=g, device=dev) < cfg.jitter_p
        order = torch.rand(n, 4, generator=g, device=dev).argsort(dim=1)  # (N, 4) per-sample op order
        for pos in range(4):
            for op_id, op in enumerate(_COLOUR_OPS):
                sel = (apply & (order[:, pos] == op_id)).nonzero().flatten()
                if len(sel):
                    x[sel] = op(x[sel], factors[sel, op_id])
        grey = (torch.rand(n, generator=g, device=dev) < cfg.grey_p).nonzero().flatten()
        if len(grey):
            x[grey] = _grey(x[grey]).expand(-1, 3, -1, -1)
        return x

    def blur(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, hgt, wid = x.shape
        dev, k = x.device, self.cfg.blur_kernel
        sigma = _uniform(n, 0.1, 2.0, g, dev)
        sel = (torch.rand(n, generator=g, device=dev) < self.cfg.blur_p).nonzero().flatten()
        if not len(sel):
            return x
        r = torch.arange(k, device=dev, dtype=x.dtype) - (k - 1) / 2
        kern = torch.exp(-0.5 * (r.view(1, -1) / sigma[sel].view(-1, 1)) ** 2)  # (n_sel, k)
        kern = kern / kern.sum(1, keepdim=True)
        m = len(sel)
        kern = kern.repeat_interleave(3, dim=0)  # (n_sel*3, k): one kernel per channel
        y = x[sel].reshape(1, m * 3, hgt, wid)
        pad = k // 2
        y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), kern.view(m * 3, 1, 1, k), groups=m * 3)
        y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), kern.view(m * 3, 1, k, 1), groups=m * 3)
        x[sel] = y.view(m, 3, hgt, wid)
        return x

    def __call__(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 (N, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
        x = images.float().div_(255)
        x = self.crop_flip(x, g)
        x = self.colour(x, g)
        x = self.blur(x, g)
        return standardize(x, self.cfg.normalize, self.cfg.mean, self.cfg.std)


@dataclass(frozen=True)
class ViewSpec:
    """The views a method trains on: `n_global` crops at the image size (scale min_scale-1),
    then `n_local` crops of `local_size` px (0: 96/224 of the image size, as SwAV / DINO)
    covering `local_scale` of the image."""

    n_global: int = 2
    n_local: int = 0
    local_size: int = 0
    local_scale: tuple[float, float] = (0.05, 0.4)

    def local_px(self, image_size: int) -> int:
        return self.local_size or max(8, round(image_size * 96 / 224))

    @classmethod
    def multi_crop(cls, n_local: int, local_size: int | None = None) -> "ViewSpec":
        """2 global views plus `n_local` local ones of `local_size` px (None: `local_px`'s default)."""
        return cls(n_global=2, n_local=n_local, local_size=(local_size or 0) if n_local else 0)


class BatchMultiCrop:
    """uint8 (N, 3, H, W) -> [n_global float (N, 3, S, S) views, then n_local (N, 3, s, s)].

    Every view is one `BatchSimCLRAugment` call drawing from the same generator, so the
    views are a function of (images, generator state) alone."""

    def __init__(self, cfg: AugmentConfig, views: ViewSpec):
        if views.n_global < 1 or views.n_local < 0:
            raise ValueError(f"need n_global >= 1 and n_local >= 0, got {views.n_global} and {views.n_local}")
        lo, hi = views.local_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"local_scale must satisfy 0 < lo <= hi <= 1, got {views.local_scale}")
        self.views = views
        self.global_aug = BatchSimCLRAugment(cfg)
        self.local_aug = BatchSimCLRAugment(replace(cfg, image_size=views.local_px(cfg.image_size),
                                                    min_scale=lo, max_scale=hi))

    def __call__(self, images: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
        return ([self.global_aug(images, g) for _ in range(self.views.n_global)]
                + [self.local_aug(images, g) for _ in range(self.views.n_local)])


NORMALIZE_MODES = ("dataset", "luma")


def standardize(x: torch.Tensor, mode: str, mean, std) -> torch.Tensor:
    """Float images in [0, 1], (N, 3, H, W) -> the network's input.

    "dataset": per-channel (x - mean) / std with fixed statistics (ImageNet's).
    "luma": every image shifted by its own mean luma and divided by its luma's standard
    deviation, the same for all three channels. A brightness scaling (x * b) or a contrast
    change (blend with the mean grey) is an affine map of the luma with one slope, so it
    cancels exactly (up to clipping) while the colour differences between channels stay.
    """
    if mode == "dataset":
        m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - m) / s
    if mode == "luma":
        luma = _grey(x)  # (N, 1, H, W)
        m = luma.mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
        s = luma.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-2)  # flat images: no blow-up
        return (x - m) / s
    raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {mode!r}")


def normalize_batch(images: torch.Tensor, mean, std, mode: str = "dataset") -> torch.Tensor:
    """uint8 (N, 3, S, S) -> normalised float (N, 3, S, S) on the same device (eval path)."""
    return standardize(images.float().div_(255), mode, mean, std)
