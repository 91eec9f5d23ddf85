import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from encoders.augment import (
    AugmentConfig,
    BatchSimCLRAugment,
    SimCLRTransform,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 3, 12, 10, generator=g)


@pytest.mark.parametrize("ours,ref", [(adjust_brightness, TF.adjust_brightness),
                                      (adjust_contrast, TF.adjust_contrast),
                                      (adjust_saturation, TF.adjust_saturation)])
@pytest.mark.parametrize("factor", [0.6, 1.0, 1.4])
def test_colour_ops_match_torchvision(batch, ours, ref, factor):
    got = ours(batch.clone(), torch.full((4,), factor))
    for i in range(4):
        torch.testing.assert_close(got[i], ref(batch[i], factor), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("factor", [-0.1, -0.03, 0.0, 0.05, 0.1])
def test_hue_matches_torchvision(batch, factor):
    got = adjust_hue(batch.clone(), torch.full((4,), factor))
    for i in range(4):
        torch.testing.assert_close(got[i], TF.adjust_hue(batch[i], factor), atol=1e-4, rtol=1e-4)


def test_colour_ops_use_per_sample_factors(batch):
    f = torch.tensor([0.5, 1.0, 1.5, 0.8])
    got = adjust_brightness(batch.clone(), f)
    for i in range(4):
        torch.testing.assert_close(got[i], TF.adjust_brightness(batch[i], float(f[i])))


def _identity_cfg(size):
    return AugmentConfig(image_size=size, min_scale=1.0, jitter_p=0.0, grey_p=0.0, blur_p=0.0, flip_p=0.0,
                         mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def test_full_crop_without_jitter_is_identity():
    # min_scale 1 on a square image: the crop is the whole image (ratio range includes 1 only
    # when it fits, so crops of the full area must be the full image up to rounding).
    x = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    cfg = _identity_cfg(16)
    cfg.min_scale = 1.0
    aug = BatchSimCLRAugment(cfg)
    g = torch.Generator().manual_seed(0)
    out = aug(x, g)
    # log-ratio is sampled, so a full-area crop only fits when ratio rounds to 1: the
    # fallback is then the whole image. Either way, every output is x resampled exactly.
    torch.testing.assert_close(out, x.float() / 255, atol=1e-5, rtol=0)


def test_flip_all_flips_horizontally():
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    cfg = _identity_cfg(8)
    cfg.flip_p = 1.0
    out = BatchSimCLRAugment(cfg)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x.flip(-1).float() / 255, atol=1e-5, rtol=0)


def test_greyscale_all_gives_equal_channels():
    x = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    cfg = AugmentConfig(image_size=16, grey_p=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    out = BatchSimCLRAugment(cfg)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 1], out[:, 2])


def test_blur_preserves_constant_images_and_smooths_noise():
    cfg = _identity_cfg(16)
    cfg.blur_p = 1.0
    aug = BatchSimCLRAugment(cfg)
    const = torch.full((2, 3, 16, 16), 100, dtype=torch.uint8)
    torch.testing.assert_close(aug(const, torch.Generator().manual_seed(0)), const.float() / 255)
    noise = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    assert aug(noise, torch.Generator().manual_seed(0)).std() < (noise.float() / 255).std()


def test_views_differ_and_are_reproducible_from_generator():
    x = torch.randint(0, 256, (8, 3, 24, 24), dtype=torch.uint8)
    aug = BatchSimCLRAugment(AugmentConfig(image_size=16))
    g1 = torch.Generator().manual_seed(3)
    a, b = aug(x, g1), aug(x, g1)
    assert a.shape == (8, 3, 16, 16) and a.dtype == torch.float32
    assert not torch.allclose(a, b)
    g2 = torch.Generator().manual_seed(3)
    torch.testing.assert_close(aug(x, g2), a)


def test_crop_scale_statistics_follow_recipe():
    # Crop area fraction should average ~ (0.08 + 1) / 2 before clipping: measure it by
    # cropping an image whose pixel value encodes its x coordinate.
    h = w = 64
    ramp = torch.linspace(0, 255, w).round().to(torch.uint8).view(1, 1, 1, w).expand(512, 3, h, w).contiguous()
    cfg = _identity_cfg(32)
    cfg.min_scale = 0.08
    out = BatchSimCLRAugment(cfg)(ramp, torch.Generator().manual_seed(0))
    widths = out[:, 0, 0, -1] - out[:, 0, 0, 0]  # crop width as a fraction of the ramp, ~ cw/w
    assert 0.05 < widths.min() and widths.max() <= 1.0
    assert 0.45 < widths.mean() < 0.85


def test_batched_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        BatchSimCLRAugment(AugmentConfig())(torch.rand(2, 3, 8, 8), torch.Generator())


def test_v2_two_view_transform_contract():
    img = Image.new("RGB", (40, 30), (200, 30, 60))
    views = SimCLRTransform(AugmentConfig(image_size=24))(img)
    assert isinstance(views, list) and len(views) == 2
    assert all(v.shape == (3, 24, 24) and v.dtype == torch.float32 for v in views)


# ---- the batched crop and blur against torchvision's functional ops on the same parameters ----

def crop_boxes(aug, n, h, w, seed):
    """The (left, top, width, height, flipped) each sample's crop used, read back from a
    coordinate ramp: bilinear resampling of a linear ramp is exact, so output pixel j holds
    the source coordinate x0 + (j + 0.5) * cw / S - 0.5 it sampled."""
    s = aug.cfg.image_size
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(n, 1, h, w)
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(n, 1, h, w)
    ramp = torch.cat([xs, ys, torch.zeros(n, 1, h, w)], dim=1)
    out = aug.crop_flip(ramp, torch.Generator().manual_seed(seed))
    boxes = []
    for i in range(n):
        row, col = out[i, 0, 0], out[i, 1, :, 0]
        flipped = bool(row[-1] < row[0])
        first, last = (row[-1], row[0]) if flipped else (row[0], row[-1])
        cw = float(last - first) * s / (s - 1)
        ch = float(col[-1] - col[0]) * s / (s - 1)
        x0, y0 = float(first) - 0.5 * cw / s + 0.5, float(col[0]) - 0.5 * ch / s + 0.5
        boxes.append((round(x0), round(y0), round(cw), round(ch), flipped))
        assert abs(x0 - round(x0)) < 1e-3 and abs(cw - round(cw)) < 1e-3  # integer boxes, as torchvision's
    return boxes


def test_batched_crop_equals_torchvision_resized_crop_on_the_same_boxes():
    n, h, w = 16, 32, 30
    cfg = _identity_cfg(16)
    cfg.min_scale, cfg.flip_p = 0.45, 0.5  # crops at least the output size: no edge clamping either way
    aug = BatchSimCLRAugment(cfg)
    boxes = crop_boxes(aug, n, h, w, seed=4)
    assert any(b[4] for b in boxes) and not all(b[4] for b in boxes)
    assert len({b[:4] for b in boxes}) == n  # every sample its own crop
    img = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0))
    got = aug.crop_flip(img, torch.Generator().manual_seed(4))  # same generator: same boxes
    for i, (x0, y0, cw, ch, flipped) in enumerate(boxes):
        want = TF.resized_crop(img[i], y0, x0, ch, cw, [16, 16], antialias=False)
        torch.testing.assert_close(got[i], want.flip(-1) if flipped else want, atol=1e-5, rtol=1e-5)


def test_batched_blur_equals_torchvision_gaussian_blur_on_the_same_sigmas():
    n = 6
    cfg = _identity_cfg(40)
    cfg.blur_p = 1.0
    aug = BatchSimCLRAugment(cfg)
    img = torch.rand(n, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    got = aug.blur(img.clone(), torch.Generator().manual_seed(7))
    sigma = torch.rand(n, generator=torch.Generator().manual_seed(7)) * 1.9 + 0.1  # the blur's first draw: U(0.1, 2)
    assert cfg.blur_kernel == 5
    for i in range(n):
        want = TF.gaussian_blur(img[i], [5, 5], [float(sigma[i])] * 2)
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got[0], img[0])  # it did blur
