"""The built-in synthetic source: simulated Sentinel-2/-1 imagery and Dynamic World-like noisy labels with known truth.

Nothing here is real data. Per sample it draws a land-cover truth map (spatially coherent patches of
the 9 Dynamic World classes, proportions set by a biome), then renders per season: S2 L1C digital
numbers from class spectra with green-up, seasonal snow, texture, haze, sensor noise and clouds;
S1 VV/VH backscatter in dB with multiplicative speckle; and noisy labels, by default from a
Dynamic World-like classifier of the S2 image (:mod:`noldo.sources.synthetic_labels`), masked (255)
under clouds. The truth and the measured per-season noise rate and its causes are kept, so a
method's robustness to label noise can be measured. Every number is deterministic for (seed,
candidate index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import click
import numpy as np

from noldo.catalog import CLEAR_THRESHOLD, SEASONS
from noldo.errors import NoldoError
from noldo.regions import Candidate
from noldo.sources import synthetic_labels
from noldo.sources.base import Fetched, Option, Plan, Rejected, Source
from noldo.sources.synthetic_world import (
    BARE,
    BIOMES,
    CLOUD,
    CLOUD_ALPHA_MASKED,
    CROPS,
    FLOODED,
    GRASS,
    MIN_VALID,
    PATCH_SIGMA,
    PATH,
    S1_DB,
    SHRUB,
    SNOW,
    SPECKLE_LOOKS,
    SUMMER,
    WATER,
    WINTER,
    K,
    smooth_field,
)
from noldo.store import Layout

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
        noise: with ``noise_model="simple"``: the fraction of the (cloud-free) pixels whose label is
            moved to a confused class, on top of boundary displacement and seasonal snow (default 0.2).
        noise_model: ``"dw"`` (labels from a Dynamic World-like classifier of the S2 image) or
            ``"simple"`` (the model of stores built before it); see :mod:`noldo.sources.synthetic_labels`.
        cloud_probability: chance that a season has clouds (cover then uniform in 5–90 %).
        seed: the build seed; each sample draws from (seed, candidate index).
        seasons: 4 for the `nol` split, 1 (the June reference date) for downstream splits.
    """

    name = "synthetic"
    arrays = ("s2", "s1", "dw", "truth", "s2_cloud")
    options = (Option("noise_model", click.Choice(synthetic_labels.MODELS), "dw",
                      "how labels go wrong: dw (like Dynamic World: from the S2 image, persistent across "
                      "seasons, regional confusions) or simple (the model of earlier stores)"),
               Option("noise", click.FloatRange(0, 1, max_open=True), None,
                      "with --noise-model simple: fraction of pixels whose label is swapped for a confused "
                      "class [0.2]"))

    def __init__(self, noise: float | None = None, cloud_probability: float = 0.25, seed: int = 0,
                 seasons: int = 4, noise_model: str = "dw"):
        if noise_model not in synthetic_labels.MODELS:
            raise NoldoError(f"--noise-model must be one of {', '.join(synthetic_labels.MODELS)}, got {noise_model}")
        if noise is not None and noise_model != "simple":
            raise NoldoError("--noise sets the simple model's noise; the dw model takes none (add "
                             "--noise-model simple)")
        noise = 0.2 if noise is None else noise
        if not 0 <= noise < 1:
            raise NoldoError(f"noise must be in [0, 1), got {noise}")
        self.noise, self.noise_model, self.cloud_probability, self.seed = noise, noise_model, cloud_probability, seed
        self.season_indices = tuple(range(len(SEASONS))) if seasons == len(SEASONS) else (2,)

    def _rng(self, candidate: Candidate, stream: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, candidate.index, _STREAMS[stream]])

    def plan(self, candidate: Candidate) -> Plan:
        """Draw the sample's landscape, seasons and clouds; reject it if a season is mostly cloud."""
        rng = self._rng(candidate, "plan")
        shape = candidate.grid.shape
        biome = _biome(rng, candidate.lat)
        weights = rng.dirichlet(BIOMES[biome])
        scores = np.stack([smooth_field(rng, shape, PATCH_SIGMA[c]) for c in range(K)])
        truth = np.argmax(scores + np.log(weights + 1e-9)[:, None, None], axis=0).astype("uint8")
        elevation = smooth_field(rng, shape, 30)
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
                f = smooth_field(rng, shape, 12)
                cloud = np.clip((f - np.quantile(f, 1 - rng.uniform(0.05, 0.9))) / 0.4, 0, 1)
                shadow = np.roll(cloud, (9, 13), axis=(0, 1)) * 0.6 * (cloud < 0.2)
            seasons.append(_Season(day, green, snow, cloud, shadow, float(rng.uniform(0.7, 1.4))))
            valid = float(np.mean(cloud <= CLOUD_ALPHA_MASKED))
            meta |= {f"date_t{t}": day.isoformat(), f"greenness_t{t}": round(green, 3),
                     f"snow_pct_t{t}": round(100 * float(snow.mean()), 2),
                     f"cloud_pct_t{t}": round(100 * float(np.mean(cloud > 0)), 2), f"valid_t{t}": round(valid, 4)}
            if valid < MIN_VALID:
                raise Rejected(f"cloud: season t{t} is {100 * (1 - valid):.0f}% cloud-masked")
        return Plan(meta, _Scene(truth, smooth_field(rng, shape, 1.5), seasons))

    def fetch(self, candidate: Candidate, plan: Plan, array: str) -> Fetched:
        """Render one modality (``s2``, ``s1``, ``dw``, ``s2_cloud`` or ``truth``) for all seasons."""
        scene: _Scene = plan.context
        if array == "truth":
            return Fetched(scene.truth.copy())
        if array == "dw" and self.noise_model == "dw":
            return self._dw_like(scene, *self.labels_and_causes(candidate, plan))
        rng = self._rng(candidate, array)
        render = {"s2": self._s2, "s1": self._s1, "dw": self._dw_simple, "s2_cloud": self._s2_cloud}[array]
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
        noisy = clear - 0.04 * np.abs(smooth_field(rng, scene.truth.shape, 4)) + rng.normal(0, 0.02, scene.truth.shape)
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

    def _dw_simple(self, rng, scene: _Scene, season: _Season, t: int):
        label = synthetic_labels.simple(rng, scene.truth, season.snow, season.cloud, self.noise)
        valid = label != 255
        noise = float(np.mean(label[valid] != scene.truth[valid])) if valid.any() else float("nan")
        return label, {f"noise_t{t}": round(noise, 4)}

    def labels_and_causes(self, candidate: Candidate, plan: Plan) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """The dw model's labels (seasons, y, x) from the sample's S2 images, and per season the masks of the
        wrong labels by cause (:data:`synthetic_labels.CAUSES`)."""
        scene: _Scene = plan.context
        rng = self._rng(candidate, "dw")
        s2 = self.fetch(candidate, plan, "s2").array
        shared = synthetic_labels.persistent(rng, scene.truth.shape)
        labelled = [synthetic_labels.dw_like(rng, s2[t], scene.truth, season.greenness, season.snow, season.cloud,
                                             season.shadow, shared) for t, season in enumerate(scene.seasons)]
        return np.stack([label for label, _ in labelled]), [causes for _, causes in labelled]

    @staticmethod
    def _dw_like(scene: _Scene, labels: np.ndarray, causes: list[dict[str, np.ndarray]]) -> Fetched:
        """Per season: the noise rate among the labelled pixels that are not seasonal snow, its share by
        cause, and the share of labelled pixels that are the image's snow."""
        meta = {}
        for t, season in enumerate(scene.seasons):
            valid = labels[t] != 255
            counted = max(int((valid & ~season.snow).sum()), 1)
            meta[f"noise_t{t}"] = round(sum(int(m.sum()) for m in causes[t].values()) / counted, 4)
            meta |= {f"noise_{cause}_t{t}": round(int(causes[t][cause].sum()) / counted, 4)
                     for cause in synthetic_labels.CAUSES}
            meta[f"dw_snow_t{t}"] = round(int((valid & season.snow).sum()) / max(int(valid.sum()), 1), 4)
        return Fetched(labels, meta)
