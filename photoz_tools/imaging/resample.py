"""Lanczos-3 resampling onto gnomonic cutout grids, following SWarp's conventions exactly.

Plain numpy, no I/O and no imports from the package: the science core that pz-cutout (and anyone
with a frame in memory) builds on. The conventions were measured against SWarp 2.41.5 (see the
design brief, "SWarp facts"); following them reproduces SWarp to ~4e-4 of the noise RMS:

- positions are 1-based FITS pixel coordinates ``v`` in the input frame;
- the taps are ``floor(v)-2 ... floor(v)+3`` on each axis, their six weights normalised to sum 1,
  and a fractional part below 1e-5 uses a delta (no smoothing of exactly aligned grids);
- a pixel is valid only where ``3 <= floor(v) <= naxis-3`` on both axes (else SWarp writes 0
  with weight 0);
- one flux-scaling factor per input frame: output over input pixel area, both measured by 1-pixel
  finite differences at the input centre ``(naxis+1)/2`` and its position in the output grid.

Lanczos-3 is separable in the *input* pixel axes, so every output pixel needs six x-weights, six
y-weights and one 6x6 block of the frame: one vectorised gather over a strided window view for
all pixels of all galaxies on a frame, with no per-pixel Python.
"""

from __future__ import annotations

import numpy as np

#: Cutout size and scale of Pasquet et al. (2019): 64x64 pixels of 0.396 arcsec, SDSS's own scale.
SIZE = 64
PIXEL_SCALE_ARCSEC = 0.396
_KERNEL_HALF = 3
_DEG = np.pi / 180.0


# --------------------------------------------------------------------------- kernel


# cos(k pi/3) and sin(k pi/3) for the taps k = -2..3
_COS_K = np.array([-0.5, 0.5, 1.0, 0.5, -0.5, -1.0])
_SIN_K = np.array(
    [-0.8660254037844386, -0.8660254037844386, 0.0, 0.8660254037844386, 0.8660254037844386, 0.0]
)
_TAPS32 = np.arange(-2, 4, dtype=np.float32)
_SIGN = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])  # (-1)^k = sin(pi (f-k)) / sin(pi f)
_COS_K32 = (_SIGN * _COS_K).astype(np.float32)
_SIN_K32 = (_SIGN * _SIN_K).astype(np.float32)


def lanczos3_weights(frac: np.ndarray) -> np.ndarray:
    """Normalised Lanczos-3 weights, shape (6, ...), for taps at offsets -2..3 from floor(v).

    `frac` is ``v - floor(v)`` in [0, 1). As in SWarp, fractions below 1e-5 give a delta on the
    tap at offset 0, so a grid that lands on pixel centres copies the pixels untouched; those
    above 1 - 1e-5 give a delta on the tap at +1 (SWarp's double-precision sinc gives the same).

    sinc(d) sinc(d/3) with d = f - k shares the factor sin(pi f) between taps (it cancels in
    the normalisation) and sin(pi (f-k)/3) follows from sin and cos of pi f/3 by angle
    addition, as in SWarp's own kernel: two trigonometric calls per position, not twelve. Taps
    come first so that every operation runs over long contiguous vectors.
    """
    frac = np.asarray(frac, dtype=np.float64)
    f32 = frac.astype(np.float32)
    a = np.float32(np.pi / 3.0) * f32
    sa, ca = np.sin(a), np.cos(a)
    w = np.empty((6, *frac.shape), dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in range(6):
            d = f32 - _TAPS32[k]
            w[k] = (sa * _COS_K32[k] - ca * _SIN_K32[k]) / (d * d)
        w /= w.sum(axis=0)
    # fractions within 1e-5 of 0 or of 1 are deltas on the tap at 0 or +1 (one within ~3e-8 of 1
    # rounds to 1.0 in float32 and would give 0/0 on the tap at +1: a NaN pixel)
    for delta, tap in ((frac < 1e-5, 2), (frac > 1.0 - 1e-5, 3)):
        if delta.any():
            w[:, delta] = 0.0
            w[tap, delta] = 1.0
    return w


def lanczos3(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, fill: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate `image` (ny, nx) at 1-based FITS pixel positions (`x`, `y`), any shape.

    Returns ``(values, valid)``: float32 values of the shape of `x` and a bool mask that is False
    where SWarp would give weight 0 (too close to an edge, or a non-finite position); those
    pixels hold `fill`. NaN pixels of the frame propagate into the values they touch.

    The 6x6 taps come in six gathers of all positions at once, one per kernel row (six
    contiguous pixels each), x-weighted, then y-weighted: no per-pixel Python.
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    ny, nx = image.shape
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    shape = x.shape
    x = x.ravel()
    y = y.ravel()
    with np.errstate(invalid="ignore"):
        fx = np.floor(x)
        fy = np.floor(y)
        valid = (fx >= 3) & (fx <= nx - 3) & (fy >= 3) & (fy <= ny - 3)
    out = np.full(x.shape, fill, dtype=np.float32)
    if valid.any() and nx >= 6 and ny >= 6:
        everywhere = bool(valid.all())
        if not everywhere:
            x, y, fx, fy = x[valid], y[valid], fx[valid], fy[valid]
        wx = lanczos3_weights(x - fx)
        wy = lanczos3_weights(y - fy)
        # first tap (1-based floor(v)-2) as a 0-based flat index: (floor(y)-3) nx + floor(x)-3
        base = (fy.astype(np.intp) - 3) * nx + (fx.astype(np.intp) - 3)
        # the frame seen as overlapping runs of 6 pixels (24-byte records, 4 bytes apart): one
        # gather per kernel row fetches that row's six taps of every position at once
        runs = np.ndarray(
            shape=(image.size - 5,), dtype=np.dtype((np.void, 24)), buffer=image, strides=(4,)
        )
        wxt = np.ascontiguousarray(wx.T)
        acc = np.zeros(base.size, dtype=np.float32)
        for j in range(6):
            taps = runs[base + j * nx].view(np.float32).reshape(-1, 6)
            acc += np.einsum("ni,ni->n", taps, wxt) * wy[j]
        if everywhere:
            out = acc
        else:
            out[valid] = acc
    return out.reshape(shape), valid.reshape(shape)


# --------------------------------------------------------------------------- projections


def cutout_world(
    ra0: np.ndarray, dec0: np.ndarray, size: int = SIZE, scale_arcsec: float = PIXEL_SCALE_ARCSEC
) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (deg) of every pixel centre of gnomonic cutouts centred on (`ra0`, `dec0`).

    The grid is SWarp's: TAN, CRPIX = (size+1)/2 on both axes, CD = diag(-scale, +scale), so
    north is up and east is left, and arrays come out ``[galaxy, y, x]`` (row 0 is the south edge).
    """
    ra0 = np.atleast_1d(np.asarray(ra0, dtype=np.float64))
    dec0 = np.atleast_1d(np.asarray(dec0, dtype=np.float64))
    s = scale_arcsec / 3600.0 * _DEG
    c = (size + 1) / 2.0
    pix = np.arange(1, size + 1, dtype=np.float64) - c
    xi = (-s * pix)[None, None, :]  # standard coordinates (rad): xi east, eta north
    eta = (s * pix)[None, :, None]
    a0 = (ra0 * _DEG)[:, None, None]
    d0 = (dec0 * _DEG)[:, None, None]
    return _tan_inverse(a0, d0, xi, eta)


def _tan_inverse(a0, d0, xi, eta):
    """Standard coordinates (rad) about (a0, d0) (rad) -> RA, Dec (deg)."""
    cd, sd = np.cos(d0), np.sin(d0)
    den = cd - eta * sd
    ra = a0 + np.arctan2(xi, den)
    dec = np.arctan2(sd + eta * cd, np.hypot(xi, den))
    return np.mod(ra / _DEG, 360.0), dec / _DEG


def _tan_forward(a0, d0, ra, dec):
    """RA, Dec (deg) -> standard coordinates (rad) about (a0, d0) (rad)."""
    ra = np.asarray(ra, dtype=np.float64) * _DEG
    dec = np.asarray(dec, dtype=np.float64) * _DEG
    cd0, sd0 = np.cos(d0), np.sin(d0)
    cdec, sdec = np.cos(dec), np.sin(dec)
    da = ra - a0
    cosc = sd0 * sdec + cd0 * cdec * np.cos(da)
    xi = cdec * np.sin(da) / cosc
    eta = (cd0 * sdec - sd0 * cdec * np.cos(da)) / cosc
    return xi, eta


class TanWcs:
    """A plain TAN WCS (no distortion) in numpy: pixel <-> world for many points at once.

    SDSS corrected frames carry exactly this (CTYPE RA---TAN/DEC--TAN with a CD matrix). Pixel
    coordinates are 1-based FITS coordinates.
    """

    def __init__(
        self, crpix: tuple[float, float], crval: tuple[float, float], cd: np.ndarray
    ) -> None:
        self.crpix = np.asarray(crpix, dtype=np.float64)
        self.crval = np.asarray(crval, dtype=np.float64)
        self.cd = np.asarray(cd, dtype=np.float64).reshape(2, 2)
        self.cdinv = np.linalg.inv(self.cd)
        self._a0 = self.crval[0] * _DEG
        self._d0 = self.crval[1] * _DEG

    @classmethod
    def cutout(
        cls, ra0: float, dec0: float, size: int = SIZE, scale_arcsec: float = PIXEL_SCALE_ARCSEC
    ) -> TanWcs:
        """The WCS SWarp writes for a cutout centred on (ra0, dec0)."""
        s = scale_arcsec / 3600.0
        c = (size + 1) / 2.0
        return cls((c, c), (ra0, dec0), np.diag([-s, s]))

    def world_to_pixel(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        xi, eta = _tan_forward(self._a0, self._d0, ra, dec)
        u, v = xi / _DEG, eta / _DEG  # intermediate world coordinates (deg)
        x = self.cdinv[0, 0] * u + self.cdinv[0, 1] * v + self.crpix[0]
        y = self.cdinv[1, 0] * u + self.cdinv[1, 1] * v + self.crpix[1]
        return x, y

    def pixel_to_world(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        dx = np.asarray(x, dtype=np.float64) - self.crpix[0]
        dy = np.asarray(y, dtype=np.float64) - self.crpix[1]
        u = self.cd[0, 0] * dx + self.cd[0, 1] * dy
        v = self.cd[1, 0] * dx + self.cd[1, 1] * dy
        return _tan_inverse(self._a0, self._d0, u * _DEG, v * _DEG)


def _basis(ra0: np.ndarray, dec0: np.ndarray) -> np.ndarray:
    """(..., 3, 3) columns east, north, centre: the tangent-plane frame at (ra0, dec0) (deg)."""
    a = np.asarray(ra0, dtype=np.float64) * _DEG
    d = np.asarray(dec0, dtype=np.float64) * _DEG
    ca, sa, cd, sd = np.cos(a), np.sin(a), np.cos(d), np.sin(d)
    zero = np.zeros_like(a)
    east = np.stack([-sa, ca, zero], axis=-1)
    north = np.stack([-sd * ca, -sd * sa, cd], axis=-1)
    centre = np.stack([cd * ca, cd * sa, sd], axis=-1)
    return np.stack([east, north, centre], axis=-1)


def tan_to_tan(
    frame: TanWcs,
    ra0: np.ndarray,
    dec0: np.ndarray,
    size: int = SIZE,
    scale_arcsec: float = PIXEL_SCALE_ARCSEC,
) -> tuple[np.ndarray, np.ndarray]:
    """1-based frame pixel positions (n, size, size) of cutout pixels, TAN to TAN directly.

    Both projections are gnomonic, so a cutout pixel's direction is B_out (xi, eta, 1) and its
    frame standard coordinates are the ratios of B_in^T B_out (xi, eta, 1): one 3x3 matrix per
    galaxy and frame, no trigonometry per pixel. The same numbers as going through (RA, Dec)
    with WCSLIB, to ~1e-10 pixel.
    """
    ra0 = np.atleast_1d(np.asarray(ra0, dtype=np.float64))
    dec0 = np.atleast_1d(np.asarray(dec0, dtype=np.float64))
    s = scale_arcsec / 3600.0 * _DEG
    c = (size + 1) / 2.0
    # cutout pixel (i, j) -> (xi, eta, 1) = P @ (i, j, 1)
    p = np.array([[-s, 0.0, s * c], [0.0, s, -s * c], [0.0, 0.0, 1.0]])
    b_in = _basis(frame.crval[0], frame.crval[1])
    m = np.einsum("ji,njk,kl->nil", b_in, _basis(ra0, dec0), p)  # (n, 3, 3)
    i = np.arange(1, size + 1, dtype=np.float64)
    u = (
        m[:, :, 0, None, None] * i[None, None, None, :]
        + m[:, :, 1, None, None] * i[None, None, :, None]
        + m[:, :, 2, None, None]
    )
    xi = u[:, 0] / u[:, 2] / _DEG  # frame's intermediate world coordinates (deg)
    eta = u[:, 1] / u[:, 2] / _DEG
    ci = frame.cdinv
    x = ci[0, 0] * xi + ci[0, 1] * eta + frame.crpix[0]
    y = ci[1, 0] * xi + ci[1, 1] * eta + frame.crpix[1]
    return x, y


def pixel_area(pixel_to_world, x: float, y: float) -> float:
    """Sky area (deg^2) of one pixel at (x, y), by 1-pixel finite differences (SWarp's wcs_scale).

    `pixel_to_world` maps 1-based pixel coordinates to (RA, Dec) in degrees.
    """
    ra, dec = np.asarray(pixel_to_world(np.array([x, x + 1.0, x]), np.array([y, y, y + 1.0])))
    d1 = (ra[1] - ra[0] + 180.0) % 360.0 - 180.0
    d2 = (ra[2] - ra[0] + 180.0) % 360.0 - 180.0
    return abs((d1 * (dec[2] - dec[0]) - (dec[1] - dec[0]) * d2) * np.cos(dec[0] * _DEG))


def flux_scale(
    frame_pixel_to_world,
    naxis1: int,
    naxis2: int,
    ra0: float,
    dec0: float,
    size: int = SIZE,
    scale_arcsec: float = PIXEL_SCALE_ARCSEC,
) -> float:
    """SWarp's FSCALASTRO_TYPE FIXED factor for one frame into one cutout grid.

    Output over input pixel area, both at the input frame's centre ((naxis+1)/2): in the frame,
    and at that sky position in the cutout's projection (which may lie far outside the cutout).
    """
    xc, yc = (naxis1 + 1) / 2.0, (naxis2 + 1) / 2.0
    area_in = pixel_area(frame_pixel_to_world, xc, yc)
    ra_c, dec_c = (
        float(np.squeeze(a)) for a in frame_pixel_to_world(np.array([xc]), np.array([yc]))
    )
    out = TanWcs.cutout(ra0, dec0, size, scale_arcsec)
    xo, yo = (float(np.squeeze(a)) for a in out.world_to_pixel(ra_c, dec_c))
    area_out = pixel_area(out.pixel_to_world, xo, yo)
    return area_out / area_in


def flux_scales(
    frame_pixel_to_world,
    naxis1: int,
    naxis2: int,
    ra0: np.ndarray,
    dec0: np.ndarray,
    size: int = SIZE,
    scale_arcsec: float = PIXEL_SCALE_ARCSEC,
) -> np.ndarray:
    """:func:`flux_scale` for many cutout centres at once (one frame), vectorised."""
    xc, yc = (naxis1 + 1) / 2.0, (naxis2 + 1) / 2.0
    area_in = pixel_area(frame_pixel_to_world, xc, yc)
    ra_c, dec_c = (
        float(np.squeeze(a)) for a in frame_pixel_to_world(np.array([xc]), np.array([yc]))
    )
    a0 = np.atleast_1d(np.asarray(ra0, dtype=np.float64)) * _DEG
    d0 = np.atleast_1d(np.asarray(dec0, dtype=np.float64)) * _DEG
    s = scale_arcsec / 3600.0
    c = (size + 1) / 2.0
    xi, eta = _tan_forward(a0, d0, ra_c, dec_c)
    xo = -xi / _DEG / s + c  # CD = diag(-s, s)
    yo = eta / _DEG / s + c
    xs = np.stack([xo, xo + 1.0, xo])
    ys = np.stack([yo, yo, yo + 1.0])
    ra, dec = _tan_inverse(a0, d0, -s * (xs - c) * _DEG, s * (ys - c) * _DEG)
    d1 = (ra[1] - ra[0] + 180.0) % 360.0 - 180.0
    d2 = (ra[2] - ra[0] + 180.0) % 360.0 - 180.0
    area_out = np.abs((d1 * (dec[2] - dec[0]) - (dec[1] - dec[0]) * d2) * np.cos(dec[0] * _DEG))
    return area_out / area_in
