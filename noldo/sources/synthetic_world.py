"""The simulated world of the synthetic source: classes, spectra, backscatter, patch scales, biomes.

Numbers shared by the renderer (:mod:`noldo.sources.synthetic`) and the label models
(:mod:`noldo.sources.synthetic_labels`); CATALOG.md prints them. Nothing here is measured data.
"""

from __future__ import annotations

import numpy as np

from noldo.catalog import DW_CLASSES

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


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A smooth Gaussian random field with zero mean and unit variance."""
    from scipy.ndimage import gaussian_filter  # here: a build from another source never loads scipy

    f = gaussian_filter(rng.standard_normal(shape, dtype="float32"), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-6)
