"""Galaxy models for the mock survey and their GalSim rendering (bulge + disk, PSF-convolved).

Why these choices:
- Sizes follow a size-luminosity relation in kpc and the angular-diameter distance at the
  galaxy's redshift, so at fixed magnitude a smaller galaxy is farther away: pixels carry
  redshift information that magnitudes alone do not (the point of an image CNN).
- Bulges are redder than disks (a band-dependent bulge fraction), so colour gradients exist.
- Sersic indices are discrete (n=4 truncated at 8 half-light radii, n=1): every galaxy is a
  dilation, shear and flux scaling of two template profiles, so GalSim never rebuilds its Sersic
  lookup tables (a new continuous index costs ~70 ms; a draw costs ~2-3 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BANDS = "ugriz"
# SDSS A_band / E(B-V) (Schlegel, Finkbeiner & Davis 1998, as used by SkyServer)
EXTINCTION_COEF = np.array([5.155, 3.793, 2.751, 2.086, 1.479])
PIXEL_SCALE = 0.396  # arcsec per pixel
# bulge minus disk colour, relative to r: bulges are fainter in u, g and brighter in i, z
BULGE_COLOUR = np.array([0.9, 0.35, 0.0, -0.08, -0.15])
BULGE_TRUNC = 8.0  # truncation of the n=4 bulge in half-light radii (keeps its flux finite)


def nanomaggies(mag: np.ndarray) -> np.ndarray:
    """Flux in nanomaggies of an AB-like SDSS magnitude (22.5 is 1 nanomaggy)."""
    return 10.0 ** (-0.4 * (np.asarray(mag) - 22.5))


@dataclass
class Galaxies:
    """Everything needed to draw each galaxy, in every band and epoch, the same way."""

    ra: np.ndarray
    dec: np.ndarray
    z: np.ndarray
    mag: np.ndarray  # (n, 5) intrinsic (dereddened) magnitudes: the truth
    ebv: np.ndarray
    bulge_frac: np.ndarray  # (n, 5) bulge-to-total flux per band
    hlr_bulge: np.ndarray  # arcsec
    hlr_disk: np.ndarray  # arcsec
    q_bulge: np.ndarray
    q_disk: np.ndarray
    pa: np.ndarray  # radians, position angle of both components

    def __len__(self) -> int:
        return len(self.z)

    def take(self, index: np.ndarray) -> Galaxies:
        """A subset of the galaxies (boolean mask or indices)."""
        return Galaxies(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})

    @property
    def extinction(self) -> np.ndarray:
        """A_band for each galaxy, (n, 5)."""
        return self.ebv[:, None] * EXTINCTION_COEF[None, :]

    @property
    def flux(self) -> np.ndarray:
        """Observed (reddened) total flux in nanomaggies, (n, 5): what the frames hold."""
        return nanomaggies(self.mag + self.extinction)

    @property
    def ba(self) -> np.ndarray:
        """Axis ratio of the r-band light: the dominant component's."""
        return np.where(self.bulge_frac[:, 2] > 0.5, self.q_bulge, self.q_disk)

    @property
    def r50(self) -> np.ndarray:
        """Rough r-band half-light radius (arcsec): the flux-weighted mean of the components."""
        f = self.bulge_frac[:, 2]
        return f * self.hlr_bulge + (1 - f) * self.hlr_disk


@lru_cache(maxsize=8)
def _distances(zmax: float = 0.6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Angular-diameter and luminosity distances (Mpc) on a grid, interpolated per galaxy."""
    from astropy.cosmology import Planck18

    zg = np.linspace(1e-4, zmax, 600)
    da = Planck18.angular_diameter_distance(zg).value
    dl = Planck18.luminosity_distance(zg).value
    return zg, da, dl


def absolute_mag_r(z: np.ndarray, r: np.ndarray) -> np.ndarray:
    """M_r with a rough K-correction (0.9 z): only the size-luminosity relation uses it."""
    zg, _, dl = _distances()
    d = np.interp(z, zg, dl)
    return r - 5 * np.log10(d * 1e5) - 0.9 * z


def draw_morphology(
    z: np.ndarray, mag: np.ndarray, rng: np.random.Generator, size_scale: np.ndarray | float = 1.0
) -> dict[str, np.ndarray]:
    """Bulge fraction, sizes, axis ratios and angle from redshift and intrinsic colours."""
    n = len(z)
    g, r = mag[:, 1], mag[:, 2]
    # red-sequence membership from observed g-r against its redshift track
    early_p = 1 / (1 + np.exp(-((g - r) - (0.62 + 1.9 * z)) / 0.06))
    early = rng.random(n) < early_p
    bt_r = np.where(early, rng.beta(6, 3, n), rng.beta(1.3, 6, n))
    m_abs = absolute_mag_r(z, r)
    # Shen et al. (2003)-like relations: log R50[kpc] vs M_r, with log-normal scatter
    log_rd = 0.52 - 0.104 * (m_abs + 21) + 0.17 * rng.standard_normal(n)
    log_rb = np.where(early, 0.33 - 0.224 * (m_abs + 21), 0.0 - 0.1 * (m_abs + 21))
    log_rb = log_rb + 0.15 * rng.standard_normal(n)
    rd_kpc, rb_kpc = 10**log_rd, 10**log_rb
    rb_kpc = np.where(early, rb_kpc, np.minimum(rb_kpc, 0.5 * rd_kpc))
    zg, da, _ = _distances()
    arcsec_per_kpc = 206.265 / np.interp(z, zg, da)  # 1 kpc / D_A[Mpc] in arcsec
    hlr_d = np.clip(rd_kpc * arcsec_per_kpc * size_scale, 0.25, 30.0)
    hlr_b = np.clip(rb_kpc * arcsec_per_kpc * size_scale, 0.15, 20.0)
    cos_i = rng.random(n)
    q_disk = np.sqrt(cos_i**2 + 0.2**2 * (1 - cos_i**2))
    q_bulge = rng.uniform(0.6, 1.0, n)
    # band-dependent bulge fraction: total flux per band is unchanged, bulges redder
    c = 10 ** (-0.4 * BULGE_COLOUR)[None, :]
    bf = bt_r[:, None] * c / (bt_r[:, None] * c + (1 - bt_r[:, None]))
    return {
        "bulge_frac": bf,
        "hlr_bulge": hlr_b,
        "hlr_disk": hlr_d,
        "q_bulge": q_bulge,
        "q_disk": q_disk,
        "pa": rng.uniform(0, np.pi, n),
    }


def make_galaxies(
    ra: np.ndarray,
    dec: np.ndarray,
    z: np.ndarray,
    mag: np.ndarray,
    ebv: np.ndarray,
    rng: np.random.Generator,
    size_scale: np.ndarray | float = 1.0,
) -> Galaxies:
    """Galaxies at given positions with morphology drawn from their redshift and photometry."""
    morph = draw_morphology(z, mag, rng, size_scale)
    return Galaxies(ra=ra, dec=dec, z=z, mag=mag, ebv=ebv, **morph)


# --------------------------------------------------------------------------- GalSim drawing


@lru_cache(maxsize=1)
def _templates():
    import galsim

    # a 1 % folding threshold (default 0.5 %) draws ~15 % faster; fluxes are unaffected
    gsp = galsim.GSParams(folding_threshold=1e-2)
    bulge = galsim.Sersic(
        n=4, half_light_radius=1.0, trunc=BULGE_TRUNC, flux_untruncated=False, gsparams=gsp
    )
    disk = galsim.Exponential(half_light_radius=1.0, gsparams=gsp)
    return bulge, disk


def galaxy_object(gal: Galaxies, i: int, band: int, flux: float | None = None):
    """The GalSim profile (before the PSF) of galaxy i in a band, total flux in nanomaggies."""
    import galsim

    bulge_t, disk_t = _templates()
    total = float(gal.flux[i, band]) if flux is None else flux
    fb = float(gal.bulge_frac[i, band])
    beta = float(gal.pa[i]) * galsim.radians
    parts = []
    if fb > 1e-4:
        parts.append(
            bulge_t.dilate(float(gal.hlr_bulge[i]))
            .shear(q=float(gal.q_bulge[i]), beta=beta)
            .withFlux(total * fb)
        )
    if fb < 1 - 1e-4:
        parts.append(
            disk_t.dilate(float(gal.hlr_disk[i]))
            .shear(q=float(gal.q_disk[i]), beta=beta)
            .withFlux(total * (1 - fb))
        )
    return parts[0] if len(parts) == 1 else galsim.Add(parts)


def stamp_size(hlr_bulge: float, hlr_disk: float, bulge_frac: float, fwhm: float) -> int:
    """An even stamp size (pixels) holding > 99 % of the flux, bounded for speed."""
    r = max(
        fwhm * 4.0,
        hlr_disk * 5.0 if bulge_frac < 0.999 else 0.0,
        hlr_bulge * (BULGE_TRUNC if bulge_frac > 0.02 else 3.0),
    )
    n = int(np.ceil(2 * r / PIXEL_SCALE)) + 4
    return int(min(max(n + n % 2, 32), 384))


def stamp_sizes(gal: Galaxies, band: int, fwhm: float) -> np.ndarray:
    """stamp_size for every galaxy at once (to skip galaxies whose stamp misses a frame)."""
    bf = gal.bulge_frac[:, band]
    r = np.maximum(fwhm * 4.0, np.where(bf < 0.999, gal.hlr_disk * 5.0, 0.0))
    r = np.maximum(r, gal.hlr_bulge * np.where(bf > 0.02, BULGE_TRUNC, 3.0))
    n = np.ceil(2 * r / PIXEL_SCALE).astype(np.int64) + 4
    return np.clip(n + n % 2, 32, 384)


def psf_object(fwhm: float):
    """An SDSS-like seeing profile: Kolmogorov, whose wings match the double-Gaussian-plus-
    power-law PSF of SDSS better than a Gaussian, and that GalSim draws fast."""
    import galsim

    return galsim.Kolmogorov(fwhm=float(fwhm))


def draw_object(image, obj, psf, x: float, y: float, wcs, size: int) -> None:
    """Add obj (convolved with psf) centred at 1-based FITS pixel (x, y) into a galsim image."""
    import galsim

    conv = galsim.Convolve(obj, psf) if psf is not None else obj
    stamp = conv.drawImage(nx=size, ny=size, wcs=wcs, center=galsim.PositionD(x, y))
    overlap = stamp.bounds & image.bounds
    if overlap.isDefined():
        image[overlap] += stamp[overlap]


def render_stamp(
    gal: Galaxies,
    i: int,
    band: int,
    fwhm: float,
    size: int = 64,
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """One galaxy alone on a size x size stamp, north up east left, 0.396"/pix (tests, previews)."""
    import galsim

    wcs = galsim.PixelScale(PIXEL_SCALE)  # GalSim's u points west: north up, east left
    image = galsim.ImageF(size, size, wcs=wcs)
    c = image.true_center
    draw_object(
        image,
        galaxy_object(gal, i, band),
        psf_object(fwhm),
        c.x + offset[0],
        c.y + offset[1],
        wcs,
        size,
    )
    return image.array.copy()
