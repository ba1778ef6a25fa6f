"""Galaxy models for the mock survey and their GalSim rendering (bulge + disk, PSF-convolved).

One latent type drives both the spectrum and the shape. The intrinsic colours come from the
deconvolved colour-magnitude-redshift mixture (photometry.py), whose red sequence is tight and
whose blue cloud is broad; each galaxy's type follows its intrinsic g-r against the red
sequence at its z, P(early) = 1 / (1 + exp(-(g-r - (0.62 + 1.9 z)) / 0.05)). Drawing colours,
then the type given colours, is the same joint distribution as drawing the type, then colours
given the type: at a given z the colours follow the type, with the mixture's intrinsic scatter.
The type then sets:

- bulge-to-total (r band): early Beta(6, 3) (mean 0.67), late Beta(1.3, 6) (mean 0.18), as in
  SDSS bulge + disk decompositions (Simard et al. 2011, ApJS 196, 11; Meert, Vikram & Bernardi
  2015, MNRAS 446, 3943: ellipticals B/T > 0.5, spirals mostly < 0.3);
- profiles: a de Vaucouleurs bulge (Sersic n=4, truncated at 8 r_e) and an exponential disk
  (n=1); bulges redder than disks (a band-dependent bulge fraction), so colour gradients exist;
- component sizes: late types a bulge of 0.2 x the disk's r_e (0.15 dex scatter; Gadotti 2009,
  MNRAS 393, 1531: r_e,bulge / h ~ 0.2-0.5), early types a disk of 2 x the bulge's;
- the galaxy's r-band Petrosian half-light radius R50 (kpc, Planck18 distances) from Shen et
  al. (2003, MNRAS 343, 978, eqs. 14-18 and Table 1, r band): early types
  log R50 = -0.4 a M + b with a = 0.65, b = -5.06; late types
  log R50 = -0.4 alpha M + (beta - alpha) log(1 + 10^(-0.4 (M - M0))) + gamma with alpha = 0.21,
  beta = 0.53, gamma = -1.31, M0 = -20.52; scatter in ln R50
  sigma = s2 + (s1 - s2) / (1 + 10^(-0.8 (M - M0))), early s1 = 0.45, s2 = 0.27, late
  s1 = 0.48, s2 = 0.25 (M = M_r with a rough K-correction 0.9 z);
- axis ratios: disks from a random inclination (intrinsic thickness 0.2), bulges 0.6-1.

The photometry (the model's or a table's) is Petrosian: each galaxy's total flux per band is
set so that a noise-free, PSF-free Petrosian measurement of its profile (r-band radius, 2 r_P
apertures, circular profiles) returns the given magnitude; the truth (`true_mag_*`) is the
total. So the MGS selection and the colours mean what they mean on the sky, and a measurement
of the rendered frames returns the input photometry plus what seeing, noise and neighbours do.
Sersic indices are discrete (n=4, n=1): every galaxy is a dilation, shear and flux scaling of
two template profiles, so GalSim never rebuilds its Sersic lookup tables (a new continuous index
costs ~70 ms; a draw costs ~2-3 ms). Sizes set by kpc and the angular-diameter distance mean
that at fixed magnitude a smaller galaxy is farther away: pixels carry redshift information.
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
    mag: np.ndarray  # (n, 5) intrinsic (dereddened) total magnitudes: the truth
    ebv: np.ndarray
    early: np.ndarray  # bool: the latent type (early = red, bulge-dominated, compact)
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
        """r-band half-light radius of the total light (arcsec, PSF-free, circularised)."""
        prof = petrosian_profile(self.bulge_frac[:, 2:3], self.hlr_bulge, self.hlr_disk)
        return prof["r50"][:, 0]


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


# Shen et al. (2003) Table 1, r band: early (a, b, s1, s2), late (alpha, beta, gamma, s1, s2), M0
SHEN_EARLY = (0.65, -5.06, 0.45, 0.27)
SHEN_LATE = (0.21, 0.53, -1.31, 0.48, 0.25)
SHEN_M0 = -20.52


def early_probability(z: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """P(early type) from the intrinsic g-r against the red sequence's track in z."""
    gr = mag[:, 1] - mag[:, 2]
    return 1 / (1 + np.exp(-(gr - (0.62 + 1.9 * z)) / 0.05))


def shen_r50(m_abs: np.ndarray, early: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """r-band Petrosian half-light radius (kpc) from Shen et al. (2003), with their scatter."""
    a, b, s1e, s2e = SHEN_EARLY
    al, be, ga, s1l, s2l = SHEN_LATE
    log_e = -0.4 * a * m_abs + b
    log_l = -0.4 * al * m_abs + (be - al) * np.log10(1 + 10 ** (-0.4 * (m_abs - SHEN_M0))) + ga
    s1, s2 = np.where(early, s1e, s1l), np.where(early, s2e, s2l)
    sigma_ln = s2 + (s1 - s2) / (1 + 10 ** (-0.8 * (m_abs - SHEN_M0)))
    log_r = np.where(early, log_e, log_l) + sigma_ln / np.log(10) * rng.standard_normal(len(m_abs))
    return 10**log_r


def draw_morphology(
    z: np.ndarray, mag: np.ndarray, rng: np.random.Generator, size_scale: np.ndarray | float = 1.0
) -> dict[str, np.ndarray]:
    """Type, bulge fraction, sizes, axis ratios and angle from z and intrinsic photometry."""
    n = len(z)
    early = rng.random(n) < early_probability(z, mag)
    bt_r = np.where(early, rng.beta(6, 3, n), rng.beta(1.3, 6, n))
    # component sizes relative to each other, then scaled to the Shen et al. R50
    ratio = np.where(early, 2.0, 0.2) * 10 ** (0.15 * rng.standard_normal(n))
    hlr_b = np.where(early, 1.0, ratio)
    hlr_d = np.where(early, ratio, 1.0)
    c = 10 ** (-0.4 * BULGE_COLOUR)[None, :]
    bf = bt_r[:, None] * c / (bt_r[:, None] * c + (1 - bt_r[:, None]))
    unit = petrosian_profile(bf[:, 2:3], hlr_b, hlr_d)["petro_r50"][:, 0]
    zg, da, _ = _distances()
    arcsec_per_kpc = 206.265 / np.interp(z, zg, da)  # 1 kpc / D_A[Mpc] in arcsec
    r50 = shen_r50(absolute_mag_r(z, mag[:, 2]), early, rng) * arcsec_per_kpc * size_scale
    scale = np.clip(r50, 0.1, 20.0) / unit
    cos_i = rng.random(n)
    q_disk = np.sqrt(cos_i**2 + 0.2**2 * (1 - cos_i**2))
    q_bulge = rng.uniform(0.6, 1.0, n)
    return {
        "early": early,
        "bulge_frac": bf,
        "hlr_bulge": np.clip(hlr_b * scale, 0.05, 20.0),
        "hlr_disk": np.clip(hlr_d * scale, 0.1, 30.0),
        "q_bulge": q_bulge,
        "q_disk": q_disk,
        "pa": rng.uniform(0, np.pi, n),
    }


@lru_cache(maxsize=1)
def _profile_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Circular cumulative light L(<x) and surface brightness I(x) (total 1, r_e = 1) of the
    truncated n=4 bulge and the exponential disk, on a log grid of x = R / r_e."""
    x = np.geomspace(1e-4, 200.0, 4000)

    def cumulative(n_s: float, re0: float, trunc: float) -> tuple[np.ndarray, np.ndarray]:
        b = 2 * n_s - 1 / 3 + 0.009876 / n_s
        i = np.exp(-b * (x / re0) ** (1 / n_s)) * (x <= trunc)
        dl = np.diff(x**2) * 0.5 * (i[1:] + i[:-1]) * np.pi
        cum = np.r_[0.0, np.cumsum(dl)]
        return cum / cum[-1], i / cum[-1]

    lo, hi = 0.5, 3.0  # the untruncated r_e whose truncated profile has r_e = 1
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        cum, _ = cumulative(4.0, mid, BULGE_TRUNC)
        lo, hi = (mid, hi) if np.interp(1.0, x, cum) > 0.5 else (lo, mid)
    cb, ib = cumulative(4.0, 0.5 * (lo + hi), BULGE_TRUNC)
    cd, id_ = cumulative(1.0, 1.0, np.inf)
    return x, cb, ib, cd, id_


def petrosian_profile(
    bulge_frac: np.ndarray, hlr_bulge: np.ndarray, hlr_disk: np.ndarray, ref: int = 0
) -> dict[str, np.ndarray]:
    """Noise-free, PSF-free SDSS Petrosian quantities of circular bulge + disk profiles.

    bulge_frac (n, nb); the radius r_P comes from band `ref`. Returns petro_rad (n,) in the
    radii's units, petro_frac (n, nb) the share of the total flux within 2 r_P, petro_r50
    (n, nb) the radius holding half the Petrosian flux, r50 (n, nb) that of the total light.
    """
    x, cb, _, cd, _ = _profile_tables()
    hb, hd = np.asarray(hlr_bulge, float)[:, None], np.asarray(hlr_disk, float)[:, None]
    grid = np.geomspace(0.02, 40.0, 400)[None, :] * np.maximum(hb, hd)  # (n, g) radii

    def light(r: np.ndarray, f: np.ndarray) -> np.ndarray:
        return f * np.interp(r / hb, x, cb) + (1 - f) * np.interp(r / hd, x, cd)

    f = bulge_frac[:, ref : ref + 1]
    inner = light(grid, f)
    annulus = light(1.25 * grid, f) - light(0.8 * grid, f)
    ratio = (annulus / (1.25**2 - 0.8**2)) / np.maximum(inner, 1e-300)
    below = ratio < 0.2
    j = np.where(below.any(axis=1), below.argmax(axis=1), grid.shape[1] - 1)
    jj = np.maximum(j - 1, 0)
    rows = np.arange(len(grid))
    r0, r1 = grid[rows, jj], grid[rows, j]
    a0, a1 = ratio[rows, jj], ratio[rows, j]
    t = np.clip((a0 - 0.2) / np.where(a0 != a1, a0 - a1, 1.0), 0, 1)
    rp = np.exp(np.log(r0) + t * (np.log(r1) - np.log(r0)))
    frac = np.empty(bulge_frac.shape)
    r50p = np.empty(bulge_frac.shape)
    r50 = np.empty(bulge_frac.shape)
    for k in range(bulge_frac.shape[1]):
        fk = bulge_frac[:, k : k + 1]
        cum = light(grid, fk)
        frac[:, k] = light(2 * rp[:, None], fk)[:, 0]
        r50p[:, k] = _first_crossing(grid, cum, 0.5 * frac[:, k])
        r50[:, k] = _first_crossing(grid, cum, np.full(len(grid), 0.5))
    return {"petro_rad": rp, "petro_frac": frac, "petro_r50": r50p, "r50": r50}


def _first_crossing(grid: np.ndarray, cum: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Radius where each row's increasing curve `cum` reaches `level` (log-interpolated)."""
    j = np.clip((cum < level[:, None]).sum(axis=1), 1, grid.shape[1] - 1)
    rows = np.arange(len(grid))
    c0, c1 = cum[rows, j - 1], cum[rows, j]
    t = np.clip((level - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0, 1)
    g0, g1 = grid[rows, j - 1], grid[rows, j]
    return np.exp(np.log(g0) + t * (np.log(g1) - np.log(g0)))


def make_galaxies(
    ra: np.ndarray,
    dec: np.ndarray,
    z: np.ndarray,
    mag: np.ndarray,
    ebv: np.ndarray,
    rng: np.random.Generator,
    size_scale: np.ndarray | float = 1.0,
) -> Galaxies:
    """Galaxies at given positions; `mag` is intrinsic Petrosian photometry (see the module's
    docstring): the total flux rendered is what a noise-free Petrosian measurement returns."""
    morph = draw_morphology(z, mag, rng, size_scale)
    frac = petrosian_profile(morph["bulge_frac"], morph["hlr_bulge"], morph["hlr_disk"], ref=2)
    total = mag + 2.5 * np.log10(frac["petro_frac"])
    return Galaxies(ra=ra, dec=dec, z=z, mag=total, ebv=ebv, **morph)


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


MAX_STAMP = 512  # pixels: the largest stamp drawn (a 50" bulge keeps > 99 % of its light)


def stamp_size(
    hlr_bulge: float,
    hlr_disk: float,
    bulge_frac: float,
    fwhm: float,
    q_bulge: float = 1.0,
    q_disk: float = 1.0,
) -> int:
    """An even stamp size (pixels) holding > 99 % of the flux, bounded for speed; the major
    axis of a sheared profile is hlr / sqrt(q) (GalSim's shear keeps the area)."""
    r = max(
        fwhm * 4.0,
        hlr_disk / np.sqrt(q_disk) * 5.0 if bulge_frac < 0.999 else 0.0,
        hlr_bulge / np.sqrt(q_bulge) * (BULGE_TRUNC if bulge_frac > 0.02 else 3.0),
    )
    n = int(np.ceil(2 * r / PIXEL_SCALE)) + 4
    return int(min(max(n + n % 2, 32), MAX_STAMP))


def stamp_sizes(gal: Galaxies, band: int, fwhm: float) -> np.ndarray:
    """stamp_size for every galaxy at once (to skip galaxies whose stamp misses a frame)."""
    bf = gal.bulge_frac[:, band]
    hd, hb = gal.hlr_disk / np.sqrt(gal.q_disk), gal.hlr_bulge / np.sqrt(gal.q_bulge)
    r = np.maximum(fwhm * 4.0, np.where(bf < 0.999, hd * 5.0, 0.0))
    r = np.maximum(r, hb * np.where(bf > 0.02, BULGE_TRUNC, 3.0))
    n = np.ceil(2 * r / PIXEL_SCALE).astype(np.int64) + 4
    return np.clip(n + n % 2, 32, MAX_STAMP)


def psf_object(fwhm: float):
    """An SDSS-like seeing profile: Kolmogorov, whose wings match the double-Gaussian-plus-
    power-law PSF of SDSS better than a Gaussian, and that GalSim draws fast. Its k-space
    images are cached (`_kolmogorov_class`): a frame's galaxies reuse a few dozen FFT grids."""
    return _kolmogorov_class()(fwhm=float(fwhm))


_KCACHE_BYTES = 64 << 20  # at most this much cached k-space PSF images (least recently used out)


@lru_cache(maxsize=1)
def _kolmogorov_class():
    """galsim.Kolmogorov whose k-space images are cached by everything that sets them.

    Why: every galaxy is drawn by FFT with the frame's PSF, and GalSim evaluates the PSF on the
    k grid of each draw (a third of the drawing time), though the grids of a frame repeat (they
    follow the image size and the PSF's own maxk). The key holds all that SBKolmogorov.drawK
    reads (lam/r0, flux, gsparams, the grid's bounds, scale and dtype, the Jacobian), and drawK
    overwrites every pixel, so a cached copy is the very array GalSim would compute. Module-
    level, so that GalSim's copies of the object (withGSParams) share it; withFlux returns a
    plain Kolmogorov (stars are not cached).
    """
    from collections import OrderedDict

    import galsim

    cache: OrderedDict = OrderedDict()
    used = [0]

    class CachedKolmogorov(galsim.Kolmogorov):
        def _drawKImage(self, image, jac=None):
            arr = image.array
            key = (
                self.lam_over_r0,
                self.flux,
                self.gsparams,
                image.bounds,
                image.scale,
                arr.dtype.str,
                None if jac is None else np.asarray(jac, float).tobytes(),
            )
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                arr[...] = hit
                return
            super()._drawKImage(image, jac)
            cache[key] = arr.copy()
            used[0] += arr.nbytes
            while used[0] > _KCACHE_BYTES and len(cache) > 1:
                used[0] -= cache.popitem(last=False)[1].nbytes

    return CachedKolmogorov


def draw_object(image, obj, psf, x: float, y: float, wcs, size: int, seg=None):
    """Add obj (convolved with psf) centred at 1-based FITS pixel (x, y) into a galsim image.

    seg = (labels, best, ident, threshold): numpy arrays of the image's shape, updated where
    this object's model exceeds `threshold` and every object's drawn so far (a segmentation
    map of the noise-free scene: the stand-in for a deblender's footprints). Returns the
    stamp (a galsim image with its bounds).
    """
    import galsim

    conv = galsim.Convolve(obj, psf) if psf is not None else obj
    stamp = conv.drawImage(nx=size, ny=size, wcs=wcs, center=galsim.PositionD(x, y))
    overlap = stamp.bounds & image.bounds
    if overlap.isDefined():
        b0, s0 = image.bounds, stamp.bounds
        ys = slice(overlap.ymin - b0.ymin, overlap.ymax - b0.ymin + 1)
        xs = slice(overlap.xmin - b0.xmin, overlap.xmax - b0.xmin + 1)
        v = stamp.array[
            overlap.ymin - s0.ymin : overlap.ymax - s0.ymin + 1,
            overlap.xmin - s0.xmin : overlap.xmax - s0.xmin + 1,
        ]
        # numpy's += on the arrays is what GalSim's image[overlap] += does (same dtype), less
        # its sub-image objects and its copy of the sum back onto itself
        if image.array.dtype == v.dtype:
            image.array[ys, xs] += v
        else:
            image[overlap] += stamp[overlap]
        if seg is not None:
            labels, best, ident, threshold = seg
            mine = (v > threshold) & (v > best[ys, xs])
            labels[ys, xs][mine] = ident
            best[ys, xs][mine] = v[mine]
    return stamp


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
