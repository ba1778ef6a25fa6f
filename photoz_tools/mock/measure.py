"""The mock catalogue's photometry, measured from the mock's own frames as SDSS's photo does.

Why: a catalogue of true magnitudes plus drawn Gaussian errors is cleaner than anything that
can be measured from the frames, so it hands a photometric baseline information the pixels do
not hold. Here the catalogue is SDSS Petrosian photometry (photoz_tools.imaging.petrosian:
r-band r_P, fluxes within 2 r_P in all five bands, asinh magnitudes) of the written frames,
with their PSF, sky and Poisson noise, fainter neighbours and stars.

Two stand-ins, both because the mock is not the sky:
- the mock packs catalogue galaxies ~90x denser than the MGS (to render few fields), a
  crowding no MGS galaxy sees: each is measured on the frame less the noise-free models of
  the other catalogue galaxies (their Poisson noise stays);
- photo's deblender: a segmentation map of the noise-free scene of the uncatalogued objects
  and the galaxy itself (a pixel belongs to the brightest object whose model exceeds half the
  sky sigma there); other objects' pixels are left out of the apertures and filled with the
  galaxy's own mean surface brightness at that radius (petrosian.measure's labels).
Numpy only, no I/O: the render workers call `measure_catalogued` on the images they drew.
"""

from __future__ import annotations

import numpy as np

from photoz_tools.mock import frames as fr

BANDS = "ugriz"
SEGMENT_SIGMA = 0.5  # a pixel belongs to an object where its model exceeds this x sky sigma


def sky_sigma(spec: fr.FrameSpec) -> float:
    """Per-pixel sky noise of a frame in nanomaggies (sky Poisson + dark variance)."""
    return float(np.sqrt(spec.sky_counts / spec.gain + spec.dark_variance) * spec.nmgy)


def shift_into(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """out[y, x] = image[y + dy, x + dx], zero where that falls off the image."""
    out = np.zeros_like(image)
    h, w = image.shape
    ys, yd = (slice(dy, h), slice(0, h - dy)) if dy >= 0 else (slice(0, h + dy), slice(-dy, h))
    xs, xd = (slice(dx, w), slice(0, w - dx)) if dx >= 0 else (slice(0, w + dx), slice(-dx, w))
    out[yd, xd] = image[ys, xs]
    return out


def catalogue_magnitudes(
    flux: np.ndarray, flux_err: np.ndarray, extinction: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Dereddened asinh Petrosian magnitudes and their errors (SDSS's petroMag, petroMagErr)."""
    from photoz_tools.imaging.petrosian import asinh_mag

    mag = np.empty_like(flux)
    err = np.empty_like(flux)
    for k, b in enumerate(BANDS):
        mag[:, k], err[:, k] = asinh_mag(flux[:, k], flux_err[:, k], b)
    return mag - extinction, err


# --------------------------------------------------------------------------- one catalogue galaxy


def groups(xs: np.ndarray, ys: np.ndarray, reach: np.ndarray) -> list[np.ndarray]:
    """Split objects into groups whose members lie farther apart than their reaches summed
    (greedy, in index order: deterministic), so each group is measured in one pass."""
    out: list[list[int]] = []
    for i in range(len(xs)):
        for g in out:
            d = np.hypot(xs[g] - xs[i], ys[g] - ys[i])
            if np.all(d > reach[g] + reach[i]):
                g.append(i)
                break
        else:
            out.append([i])
    return [np.array(g, np.int64) for g in out]


def _box(shape: tuple[int, int], sshape: tuple[int, int], x0: int, y0: int):
    """(image slices, stamp slices) of a stamp at 0-based corner (x0, y0) clipped to the
    image, or None where it misses."""
    h, w = shape
    sh, sw = sshape
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + sh, h), min(x0 + sw, w)
    if ya < yb and xa < xb:
        return (slice(ya, yb), slice(xa, xb)), (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
    return None


def add_stamp(image: np.ndarray, stamp: np.ndarray, x0: int, y0: int) -> None:
    """image[y0:, x0:] += stamp, clipped to the image (0-based corner, may be negative)."""
    box = _box(image.shape, stamp.shape, x0, y0)
    if box is not None:
        image[box[0]] += stamp[box[1]]


def _claim(
    labels: np.ndarray, best: np.ndarray, stamp, x0: int, y0: int, threshold: float, ident: int
) -> None:
    """Label the pixels where this object's model exceeds the threshold and the others'."""
    box = _box(labels.shape, stamp.shape, x0, y0)
    if box is not None:
        big, small = box
        sub = stamp[small]
        mine = (sub > threshold) & (sub > best[big])
        labels[big][mine] = ident


def measure_catalogued(
    residual: np.ndarray,
    stamps: list[list[tuple[np.ndarray, int, int]]],
    xs: np.ndarray,
    ys: np.ndarray,
    labels: np.ndarray,
    best: np.ndarray,
    threshold: float,
    specs: list[fr.FrameSpec],
    reach: np.ndarray,
) -> dict[str, np.ndarray]:
    """Petrosian photometry of catalogue galaxies, each on the frame without the other
    catalogue galaxies (the mock packs them ~90x denser than the MGS, a density no SDSS
    galaxy sees) but with the noise (their Poisson noise included), the fainter neighbours
    and the stars, which the segmentation map (labels, best: the noise-free scene of the
    uncatalogued objects, r grid) deblends.

    residual: (5, H, W) frames minus every catalogue galaxy's noise-free model, stacked on
    the r grid; stamps[j][b] = (noise-free stamp, x0, y0) of galaxy j in band b on that grid;
    xs, ys: 0-based r-grid positions; reach: pixels each galaxy's measurement may reach.
    """
    from photoz_tools.imaging import petrosian

    n = len(xs)
    out = {
        "flux": np.full((n, 5), np.nan),
        "flux_err": np.full((n, 5), np.nan),
        "petro_rad": np.full(n, np.nan),
        "petro_r50": np.full(n, np.nan),
        "flags": np.zeros(n, np.int64),
    }
    if n == 0:
        return out
    sky = np.array([sky_sigma(s) for s in specs])
    gain = np.array([s.gain / s.nmgy for s in specs])  # electrons per nanomaggy
    ident = labels.max() + 1 + np.arange(n)
    # One float64 image (petrosian.measure's dtype) for all groups, instead of a copy of the
    # frames and its float64 conversion per group (most of this function's time): a group's
    # stamps are added to their boxes in the residual's dtype and order (the boxes hold exact
    # float64 copies of such values, so the cast back is exact and the sums are the per-group
    # copy's), and the boxes are restored from `residual` once the group is measured.
    image = np.asarray(residual, dtype=float)
    if image is residual:
        image = residual.copy()
    lab = labels.copy()
    for g in groups(xs, ys, reach):
        boxes = []
        for j in g:
            for b in range(5):
                stamp, x0, y0 = stamps[j][b]
                box = _box(image.shape[1:], stamp.shape, x0, y0)
                if box is not None:
                    patch = image[b][box[0]].astype(residual.dtype)
                    patch += stamp[box[1]]
                    image[b][box[0]] = patch
                    boxes.append((b, box[0]))
            _claim(lab, best, *stamps[j][2], threshold, ident[j])
        res = petrosian.measure(
            image,
            xs[g],
            ys[g],
            sky_sigma=sky,
            gain=gain,
            labels=lab,
            label_ids=ident[g],
            max_radius=float(np.clip(reach[g].max(), 20.0, 150.0)),
        )
        for b, big in boxes:
            image[b][big] = residual[b][big]
        for j in g:
            box = _box(lab.shape, stamps[j][2][0].shape, *stamps[j][2][1:])
            if box is not None:
                lab[box[0]] = labels[box[0]]
        out["flux"][g] = res["flux"]
        out["flux_err"][g] = res["flux_err"]
        out["petro_rad"][g] = res["petro_rad"] * fr.PIXEL_DEG * 3600.0
        out["petro_r50"][g] = res["petro_r50"][:, 2] * fr.PIXEL_DEG * 3600.0
        out["flags"][g] = res["flags"]
    return out
