"""Cutouts of SDSS corrected frames, as Pasquet et al. (2019) made them with SWarp.

- :mod:`~photoz_tools.imaging.resample`: the numpy core (no I/O, no package imports): SWarp's
  Lanczos-3 conventions, gnomonic cutout grids, TAN-to-TAN pixel maps, flux scaling.
- :mod:`~photoz_tools.imaging.frames`: reading a corrected frame (plain, .gz, .bz2) into
  :class:`~photoz_tools.imaging.frames.Frame` (image in nanomaggies, WCS, calibration HDUs).
- :mod:`~photoz_tools.imaging.cutouts`: :func:`cutout` (pz-cutout's work: frame index, grouping
  by frame, worker processes, resume, assembly) and the in-memory helpers
  :func:`~photoz_tools.imaging.cutouts.cutouts_from_frames` and
  :func:`~photoz_tools.imaging.cutouts.resample_on_frame`.
- :mod:`~photoz_tools.imaging.swarp`: the SWarp backend (``--resampler swarp``).
- :mod:`~photoz_tools.imaging.preview`: Lupton RGB contact sheets (``--preview``).
"""
