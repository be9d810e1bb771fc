"""The label models of the synthetic source: how its Dynamic World-like labels go wrong.

``dw`` (the default) labels the way Dynamic World does: a classifier looking at the Sentinel-2
image of the season, so its errors follow what the image shows. Each pixel goes to the class whose
expected top-of-atmosphere spectrum (for the season's greenness, under nominal haze) is nearest in
log reflectance, after a slight blur (mixed pixels at boundaries), with spatially smooth logit
noise of which a share persists across seasons (more in some patches than in others); spectrally
similar classes are confused, thin cloud and haze brighten, shadow darkens (towards water), and in
some samples a regional systematic confusion relabels most of one class as another, so the
*majority* label of those patches is wrong in every season. Where the image shows seasonal snow
the label is ``snow_and_ice``: right for the image, recorded apart, never counted as noise.

``simple`` is the model of stores built before it (noise independent of the images and of the
other seasons), kept so those stores can be extended and rebuilt byte for byte.

CATALOG.md ("The synthetic source") documents both, with a figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noldo.sources.synthetic_world import (
    BARE,
    BUILT,
    CLOUD_ALPHA_MASKED,
    CONFUSION,
    CROPS,
    FLOODED,
    GRASS,
    PATH,
    SHRUB,
    SNOW,
    SUMMER,
    TREES,
    WINTER,
    K,
    smooth_field,
)

MODELS = ("dw", "simple")
#: Spread of a class's log reflectance around its expected spectrum, and the classifier's temperature.
SPREAD, TEMPERATURE = 0.2, 1.0
#: Amplitude of the smooth logit noise, its patch scale (px) and the blur of mixed pixels (px).
LOGIT_NOISE, NOISE_SIGMA, MIXING_SIGMA = 3.0, 5.0, 0.8
#: Bands the classifier uses (B10, the cirrus band, says nothing about the ground).
BANDS = [b for b in range(13) if b != 10]
#: Regional systematic confusions (true class → the class the region labels it as), as Dynamic World
#: makes them: shrub read as grass or bare, crops as grass, flooded vegetation as grass or trees.
REGIONAL = ((SHRUB, GRASS), (SHRUB, BARE), (CROPS, GRASS), (FLOODED, GRASS), (FLOODED, TREES), (GRASS, CROPS),
            (BUILT, BARE))
REGIONAL_PROBABILITY = 0.4  # of a sample having one
#: Causes of a wrong label, in the order they are attributed (the index's ``noise_<cause>_tN``).
CAUSES = ("regional", "boundary", "atmosphere", "spectral")


@dataclass(frozen=True)
class Persistent:
    """What a sample's labels share across seasons: per-class logit noise, how much of it each pixel
    keeps from season to season, and the regional confusion (true class, label, where)."""

    noise: np.ndarray  # (K, H, W)
    keep: np.ndarray  # (H, W) in [0, 1]: the persistent share of the noise
    regional: tuple[int, int] | None
    region: np.ndarray  # (H, W) bool


# scipy is imported inside the functions that use it: a build from another source never loads it
# (about 0.2 s of an Earth Engine build's start).


def persistent(rng: np.random.Generator, shape: tuple[int, int]) -> Persistent:
    from scipy.special import ndtr

    noise = np.stack([smooth_field(rng, shape, NOISE_SIGMA) for _ in range(K)])
    keep = ndtr(1.5 * smooth_field(rng, shape, 12)).astype("float32")
    regional = REGIONAL[int(rng.integers(len(REGIONAL)))] if rng.random() < REGIONAL_PROBABILITY else None
    region = smooth_field(rng, shape, 20) > rng.uniform(-1.5, 0)  # a half to nine tenths of the sample
    return Persistent(noise, keep, regional, region)


def expected_toa(greenness: float) -> np.ndarray:
    """The classifier's expectation: (K, 13) top-of-atmosphere spectra for the season, under nominal haze."""
    return greenness * SUMMER + (1 - greenness) * WINTER + PATH


def dw_like(rng: np.random.Generator, s2: np.ndarray, truth: np.ndarray, greenness: float, snow: np.ndarray,
            cloud: np.ndarray, shadow: np.ndarray, shared: Persistent) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels of one season from its S2 image (13, H, W) and the causes of their errors (masks of wrong pixels)."""
    from scipy.ndimage import gaussian_filter, maximum_filter, minimum_filter

    seen = np.log(np.maximum(gaussian_filter(s2[BANDS].astype("float32"), (0, MIXING_SIGMA, MIXING_SIGMA)), 1))
    expected = np.log(expected_toa(greenness)[:, BANDS])
    distance = sum(((seen[b] - expected[:, b, None, None]) / SPREAD) ** 2 for b in range(len(BANDS)))
    seasonal = np.stack([smooth_field(rng, truth.shape, NOISE_SIGMA) for _ in range(K)])
    noise = np.sqrt(shared.keep) * shared.noise + np.sqrt(1 - shared.keep) * seasonal
    logits = -distance / (2 * TEMPERATURE) + LOGIT_NOISE * noise
    label = np.argmax(logits, axis=0).astype("uint8")
    regional = np.zeros(truth.shape, bool)
    if shared.regional is not None:
        source, target = shared.regional
        regional = shared.region & (label == source)
        label[regional] = target
    label[snow] = SNOW
    label[cloud > CLOUD_ALPHA_MASKED] = 255
    wrong = (label != 255) & ~snow & (label != truth)
    boundary = maximum_filter(truth, 3) != minimum_filter(truth, 3)
    atmosphere = (cloud > 0.02) | (shadow > 0.02)
    causes = {"regional": wrong & regional}
    causes["boundary"] = wrong & ~regional & boundary
    causes["atmosphere"] = wrong & ~regional & ~boundary & atmosphere
    causes["spectral"] = wrong & ~regional & ~boundary & ~atmosphere
    return label, causes


def simple(rng: np.random.Generator, truth: np.ndarray, snow: np.ndarray, cloud: np.ndarray,
           noise: float) -> np.ndarray:
    """The earlier model: the truth displaced (≈1.5 px), snow, a fraction ``noise`` of the pixels in
    coherent blobs moved to a confused class, clouds masked; independent of the images and seasons."""
    from scipy.ndimage import map_coordinates
    from scipy.special import ndtr

    shape = truth.shape
    yy, xx = np.indices(shape, dtype="float32")
    shift = [1.5 * smooth_field(rng, shape, 8) for _ in range(2)]
    label = map_coordinates(truth, [yy + shift[0], xx + shift[1]], order=0, mode="nearest")
    label[snow] = SNOW
    flip = smooth_field(rng, shape, 6)
    flip = flip > np.quantile(flip, 1 - noise) if noise > 0 else np.zeros(shape, bool)
    u = ndtr(smooth_field(rng, shape, 6))  # smooth uniform field: neighbours get the same wrong class
    target = (u[..., None] > np.cumsum(CONFUSION, axis=1)[label]).sum(-1).clip(0, K - 1)
    label = np.where(flip, target, label).astype("uint8")
    label[cloud > CLOUD_ALPHA_MASKED] = 255
    return label
