"""A contact sheet of cutouts: Lupton et al. (2004) asinh colour composites from g, r, i.

Astronomers look at their cutouts before they train on them; this is the quick look. One
stretch for the whole grid (so colours and brightnesses compare between panels).
"""

from __future__ import annotations

import os

import numpy as np


def lupton_rgb(
    image: np.ndarray,
    stretch: float = 0.5,
    q: float = 8.0,
    scales: tuple[float, float, float] = (1.0, 1.1, 1.8),
) -> np.ndarray:
    """(64, 64, 5) ugriz nanomaggies -> (64, 64, 3) uint8 with north up (row 0 at the top).

    R, G, B are i, r, g, scaled by `scales` (bluer bands boosted, as SDSS's own colour images).
    """
    from astropy.visualization import make_lupton_rgb

    img = np.nan_to_num(np.asarray(image, dtype=np.float64))
    r, g, b = (img[..., 3] * scales[0], img[..., 2] * scales[1], img[..., 1] * scales[2])
    with np.errstate(invalid="ignore", divide="ignore"):  # blank (uncovered) panels
        rgb = make_lupton_rgb(r, g, b, stretch=stretch, Q=q)
    return rgb[::-1]  # FITS row 0 is the southern edge: flip so north is up on screen


def preview_grid(
    images: np.ndarray,
    path: str | os.PathLike,
    labels=None,
    columns: int | None = None,
    stretch: float = 0.5,
    q: float = 8.0,
) -> None:
    """Write a PNG grid of colour composites of `images` (n, 64, 64, 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    if n == 0:
        return
    ncol = columns or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.6 * ncol, 1.6 * nrow + 0.3), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < n:
            ax.imshow(lupton_rgb(images[k], stretch, q), interpolation="nearest")
            if labels is not None:
                ax.set_title(str(labels[k]), fontsize=6)
    fig.suptitle('g, r, i (Lupton asinh); 64 x 0.396", north up, east left', fontsize=7)
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
