"""The built-in synthetic source: simulated Sentinel-2/-1 imagery and Dynamic World-like noisy labels with known truth.

Nothing here is real data. Per sample it draws a land-cover truth map (spatially coherent patches of
the 9 Dynamic World classes, proportions set by a biome), then renders per season: S2 L1C digital
numbers from class spectra with green-up, seasonal snow, texture, haze, sensor noise and clouds;
S1 VV/VH backscatter in dB with multiplicative speckle; and noisy labels = the truth corrupted by
boundary displacement, seasonal snow, spatially coherent class confusion and cloud masking (255).
The truth and the measured per-season noise rate are kept, so a method's robustness to label
noise can be measured. Every number is deterministic for (seed, candidate index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import click
import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.special import ndtr

from noldo.catalog import CLEAR_THRESHOLD, DW_CLASSES, SEASONS
from noldo.errors import NoldoError
from noldo.regions import Candidate
from noldo.sources.base import Fetched, Option, Plan, Rejected, Source
from noldo.store import Layout

K = len(DW_CLASSES)
WATER, TREES, GRASS, FLOODED, CROPS, SHRUB, BUILT, BARE, SNOW = range(K)
#: Surface reflectance × 10000 per class (rows) and S2 band B1…B12 (columns) at full greenness …
SUMMER = np.array([
    [900, 800, 700, 500, 420, 350, 320, 280, 260, 120, 5, 120, 80],          # water
    [700, 450, 650, 380, 900, 2300, 2800, 2900, 3100, 900, 8, 1450, 700],    # trees
    [800, 550, 900, 700, 1300, 2600, 3100, 3200, 3400, 1000, 9, 2200, 1300],  # grass
    [750, 500, 700, 550, 950, 1700, 1950, 2000, 2100, 650, 8, 1100, 650],     # flooded vegetation
    [800, 550, 950, 650, 1450, 2900, 3500, 3600, 3800, 1100, 9, 2300, 1250],  # crops
    [900, 700, 1000, 1100, 1500, 2000, 2300, 2400, 2500, 900, 10, 2700, 1900],  # shrub and scrub
    [1300, 1200, 1300, 1400, 1550, 1750, 1850, 1950, 2000, 800, 12, 2300, 2000],  # built
    [1500, 1450, 1800, 2300, 2500, 2650, 2800, 2900, 3000, 1100, 13, 3600, 3000],  # bare
    [6200, 6500, 6400, 6200, 6000, 5800, 5600, 5400, 5200, 1600, 30, 700, 500],  # snow and ice
], dtype="float32")
#: … and dormant (winter): vegetation browns, crops become soil, the rest is unchanged.
WINTER = SUMMER.copy()
WINTER[TREES] = [700, 500, 650, 550, 800, 1400, 1600, 1700, 1800, 700, 8, 1500, 900]
WINTER[GRASS] = [900, 700, 950, 1050, 1300, 1700, 1900, 2000, 2100, 800, 9, 2600, 1800]
WINTER[FLOODED] = [800, 600, 750, 750, 900, 1200, 1350, 1400, 1450, 550, 8, 1400, 900]
WINTER[CROPS] = [1300, 1250, 1550, 1950, 2150, 2300, 2450, 2550, 2650, 950, 11, 3300, 2700]
WINTER[SHRUB] = [950, 800, 1050, 1300, 1500, 1750, 1900, 2000, 2100, 800, 10, 2800, 2100]
#: Additive top-of-atmosphere path radiance per band (haze), and the spectrum of a thick cloud.
PATH = np.array([800, 480, 300, 200, 200, 160, 140, 120, 110, 60, 10, 40, 20], dtype="float32")
CLOUD = np.array([5600, 5800, 5700, 5700, 5750, 5800, 5850, 5900, 5900, 2400, 900, 4200, 3100], dtype="float32")
#: S1 σ⁰ in dB (VV, VH) per class in summer; winter dries vegetation and freezes soil.
S1_DB = np.array([[-21, -28], [-8, -14], [-11, -19], [-7, -15], [-10, -17], [-10, -17.5], [-4, -11],
                  [-14, -22], [-13, -21]], dtype="float32")
#: Spatial scale (Gaussian σ in pixels) of each class's patches: lakes are big, buildings small.
PATCH_SIGMA = (22, 11, 6, 7, 9, 7, 4, 10, 16)
#: Where a mislabelled pixel goes, per true class (rows sum to 1, zero diagonal): plausible DW confusions.
CONFUSION = np.array([
    [0, .10, 0, .60, 0, 0, .10, .20, 0],       # water → flooded vegetation, bare
    [0, 0, .25, .15, .15, .45, 0, 0, 0],       # trees → shrub, grass
    [0, .10, 0, 0, .40, .35, 0, .15, 0],       # grass → crops, shrub
    [.35, .25, .25, 0, 0, .15, 0, 0, 0],       # flooded vegetation → water, trees, grass
    [0, 0, .50, 0, 0, .15, .10, .25, 0],       # crops → grass, bare
    [0, .20, .40, 0, .15, 0, 0, .25, 0],       # shrub → grass, bare, trees
    [0, 0, .25, 0, .25, 0, 0, .50, 0],         # built → bare
    [0, 0, .10, 0, .20, .40, .30, 0, 0],       # bare → shrub, built
    [.20, 0, .20, 0, 0, 0, 0, .60, 0],         # snow → bare, water
], dtype="float64")
#: Dirichlet concentrations of class proportions per biome.
BIOMES = {
    "agricultural": (1.0, 2.0, 2.0, 0.2, 6.0, 1.0, 1.0, 0.5, 0.01),
    "forest": (1.0, 8.0, 1.5, 0.5, 1.0, 2.0, 0.3, 0.3, 0.01),
    "urban": (1.0, 1.5, 2.0, 0.1, 1.0, 0.5, 7.0, 1.5, 0.01),
    "arid": (0.3, 0.3, 1.0, 0.05, 1.0, 5.0, 0.5, 7.0, 0.01),
    "wetland": (5.0, 2.0, 2.0, 4.0, 1.0, 1.0, 0.3, 0.3, 0.01),
    "mountain": (1.0, 4.0, 3.0, 0.05, 0.3, 3.0, 0.2, 3.0, 1.5),
}
CLOUD_ALPHA_MASKED = 0.3  # cloud opacity above which Dynamic World masks a pixel
MIN_VALID = 0.25  # a season with fewer unmasked pixels rejects the sample (NoL keeps complete samples only)
SPECKLE_LOOKS = 4.4  # equivalent number of looks of S1 GRD IW
_STREAMS = {"plan": 0, "s2": 1, "s1": 2, "dw": 3, "s2_cloud": 4}


@dataclass
class _Season:
    day: date
    greenness: float
    snow: np.ndarray  # bool mask of seasonal snow
    cloud: np.ndarray  # cloud opacity 0–1
    shadow: np.ndarray  # shadow strength 0–1
    haze: float


@dataclass
class _Scene:
    truth: np.ndarray
    texture: np.ndarray
    seasons: list[_Season]


def _field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A smooth Gaussian random field with zero mean and unit variance."""
    f = gaussian_filter(rng.standard_normal(shape, dtype="float32"), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-6)


def _biome(rng: np.random.Generator, lat: float) -> str:
    weights = np.array([3, 2, 1, 1.5 if abs(lat) < 40 else 0.3, 0.7, 1 if abs(lat) > 40 else 0.3])
    return str(rng.choice(list(BIOMES), p=weights / weights.sum()))


def _greenness(day: date, lat: float) -> float:
    peak = 196 if lat >= 0 else 15  # mid-July north, mid-January south
    amplitude = min(max(abs(lat) / 40, 0.2), 1.0)
    return float(0.5 + 0.5 * amplitude * math.cos(2 * math.pi * (day.timetuple().tm_yday - peak) / 365.25))


class SyntheticSource(Source):
    """Simulated NoLDO-S12 samples with known truth; see the module docstring and CATALOG.md.

    Args:
        noise: fraction of the (cloud-free) pixels whose label is moved to a confused class,
            on top of boundary displacement and seasonal snow.
        cloud_probability: chance that a season has clouds (cover then uniform in 5–90 %).
        seed: the build seed; each sample draws from (seed, candidate index).
        seasons: 4 for the `nol` split, 1 (the June reference date) for downstream splits.
    """

    name = "synthetic"
    arrays = ("s2", "s1", "dw", "truth", "s2_cloud")
    options = (Option("noise", click.FloatRange(0, 1, max_open=True), 0.2,
                      "fraction of pixels whose label is swapped for a confused class"),)

    def __init__(self, noise: float = 0.2, cloud_probability: float = 0.25, seed: int = 0, seasons: int = 4):
        if not 0 <= noise < 1:
            raise NoldoError(f"noise must be in [0, 1), got {noise}")
        self.noise, self.cloud_probability, self.seed = noise, cloud_probability, seed
        self.season_indices = tuple(range(len(SEASONS))) if seasons == len(SEASONS) else (2,)

    def _rng(self, candidate: Candidate, stream: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, candidate.index, _STREAMS[stream]])

    def plan(self, candidate: Candidate) -> Plan:
        """Draw the sample's landscape, seasons and clouds; reject it if a season is mostly cloud."""
        rng = self._rng(candidate, "plan")
        shape = candidate.grid.shape
        biome = _biome(rng, candidate.lat)
        weights = rng.dirichlet(BIOMES[biome])
        scores = np.stack([_field(rng, shape, PATCH_SIGMA[c]) for c in range(K)])
        truth = np.argmax(scores + np.log(weights + 1e-9)[:, None, None], axis=0).astype("uint8")
        elevation = _field(rng, shape, 30)
        cold = abs(candidate.lat) > 42 or biome == "mountain"
        meta: dict[str, Any] = {"biome": biome, "day_offset": candidate.day_offset}
        seasons = []
        for t, s in enumerate(self.season_indices):
            day = date.fromisoformat(SEASONS[s].reference_date) - timedelta(
                days=candidate.day_offset - int(rng.integers(-15, 15)))
            green = _greenness(day, candidate.lat)
            snow_cover = rng.uniform(0.2, 1.0) if cold and green < 0.3 and rng.random() < 0.8 else 0.0
            snow = (elevation > np.quantile(elevation, 1 - snow_cover)) if snow_cover else np.zeros(shape, bool)
            snow &= np.isin(truth, (GRASS, CROPS, SHRUB, BARE, FLOODED))
            cloud, shadow = np.zeros(shape, "float32"), np.zeros(shape, "float32")
            if rng.random() < self.cloud_probability:
                f = _field(rng, shape, 12)
                cloud = np.clip((f - np.quantile(f, 1 - rng.uniform(0.05, 0.9))) / 0.4, 0, 1)
                shadow = np.roll(cloud, (9, 13), axis=(0, 1)) * 0.6 * (cloud < 0.2)
            seasons.append(_Season(day, green, snow, cloud, shadow, float(rng.uniform(0.7, 1.4))))
            valid = float(np.mean(cloud <= CLOUD_ALPHA_MASKED))
            meta |= {f"date_t{t}": day.isoformat(), f"greenness_t{t}": round(green, 3),
                     f"snow_pct_t{t}": round(100 * float(snow.mean()), 2),
                     f"cloud_pct_t{t}": round(100 * float(np.mean(cloud > 0)), 2), f"valid_t{t}": round(valid, 4)}
            if valid < MIN_VALID:
                raise Rejected(f"cloud: season t{t} is {100 * (1 - valid):.0f}% cloud-masked")
        return Plan(meta, _Scene(truth, _field(rng, shape, 1.5), seasons))

    def fetch(self, candidate: Candidate, plan: Plan, array: str) -> Fetched:
        """Render one modality (``s2``, ``s1``, ``dw``, ``s2_cloud`` or ``truth``) for all seasons."""
        scene: _Scene = plan.context
        if array == "truth":
            return Fetched(scene.truth.copy())
        rng = self._rng(candidate, array)
        render = {"s2": self._s2, "s1": self._s1, "dw": self._dw, "s2_cloud": self._s2_cloud}[array]
        layers, metas = zip(*(render(rng, scene, season, t) for t, season in enumerate(scene.seasons)), strict=True)
        return Fetched(np.stack(layers), {k: v for m in metas for k, v in m.items()})

    def cost(self, candidate: Candidate, plan: Plan, arrays: tuple[str, ...]) -> tuple[int, dict[str, int]]:
        """No requests; the bytes of the rendered arrays (for ``--dry-run``)."""
        layout = Layout(1, len(plan.context.seasons), *candidate.grid.shape, ())
        return 0, {name: layout.nbytes(name, 1) for name in arrays}

    def _s2(self, rng, scene: _Scene, season: _Season, t: int):
        g = season.greenness
        reflectance = (g * SUMMER + (1 - g) * WINTER)[scene.truth]  # (H, W, 13)
        reflectance[season.snow] = SUMMER[SNOW]
        reflectance *= (1 + 0.06 * scene.texture)[..., None]
        toa = reflectance + PATH * season.haze
        alpha = season.cloud[..., None]
        toa = (toa * (1 - alpha) + CLOUD * alpha) * (1 - season.shadow[..., None])
        toa += rng.normal(0, 1, toa.shape).astype("float32") * (0.01 * toa + 8)
        return np.clip(np.rint(toa), 1, 20000).astype("uint16").transpose(2, 0, 1), {}

    def _s2_cloud(self, rng, scene: _Scene, season: _Season, t: int):
        """A Cloud Score+-like ``cs_cdf`` × 100 from the season's own clouds: near 100 in clear sky, falling with
        cloud opacity and shadow, lowered a little by haze, with smooth noise (the score errs like a model)."""
        clear = (1 - season.cloud) * (1 - 1.2 * season.shadow) - 0.08 * (season.haze - 0.7)
        noisy = clear - 0.04 * np.abs(_field(rng, scene.truth.shape, 4)) + rng.normal(0, 0.02, scene.truth.shape)
        score = np.clip(np.rint(100 * noisy), 0, 100).astype("uint8")
        return score, {f"s2_clear_t{t}": round(float((score >= CLEAR_THRESHOLD).mean()), 4)}

    def _s1(self, rng, scene: _Scene, season: _Season, t: int):
        db = S1_DB[scene.truth].copy()  # (H, W, 2)
        vegetated = np.isin(scene.truth, (GRASS, CROPS, SHRUB, FLOODED))
        db[vegetated] += 3 * (season.greenness - 0.5)
        db[scene.truth == WATER] += rng.uniform(0, 6)  # wind roughens water differently each date
        db[season.snow] -= 3  # wet snow absorbs
        db += 0.8 * scene.texture[..., None]
        linear = 10 ** (db / 10) * rng.gamma(SPECKLE_LOOKS, 1 / SPECKLE_LOOKS, db.shape)
        return (10 * np.log10(linear)).astype("float32").transpose(2, 0, 1), {}

    def _dw(self, rng, scene: _Scene, season: _Season, t: int):
        shape = scene.truth.shape
        yy, xx = np.indices(shape, dtype="float32")
        shift = [1.5 * _field(rng, shape, 8) for _ in range(2)]
        label = map_coordinates(scene.truth, [yy + shift[0], xx + shift[1]], order=0, mode="nearest")
        label[season.snow] = SNOW
        flip = _field(rng, shape, 6)
        flip = flip > np.quantile(flip, 1 - self.noise) if self.noise > 0 else np.zeros(shape, bool)
        u = ndtr(_field(rng, shape, 6))  # smooth uniform field: neighbours get the same wrong class
        target = (u[..., None] > np.cumsum(CONFUSION, axis=1)[label]).sum(-1).clip(0, K - 1)
        label = np.where(flip, target, label).astype("uint8")
        label[season.cloud > CLOUD_ALPHA_MASKED] = 255
        valid = label != 255
        noise = float(np.mean(label[valid] != scene.truth[valid])) if valid.any() else float("nan")
        return label, {f"noise_t{t}": round(noise, 4)}
