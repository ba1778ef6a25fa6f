"""The frame index: its grid-hashed overlap search equals a brute-force test, RA = 0 included."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from photoz_tools.sdss.frameindex import MARGIN_DEG, FrameIndex, FrameRef


def test_search_equals_brute_force_across_ra_zero():
    rng = np.random.default_rng(1)
    n = 6000
    ra0 = np.r_[rng.uniform(0, 360, n - 300), rng.uniform(359.8, 360, 300)]
    dec0 = np.r_[rng.uniform(-20, 70, n - 300), rng.uniform(-1.2, 0.8, 300)]
    w = 0.15 / np.cos(np.radians(dec0))
    ix = FrameIndex(
        [FrameRef("r", 1, 1, i) for i in range(n)], ra0, (ra0 + w) % 360, dec0, dec0 + 0.22
    )
    g = 1500
    gra = np.r_[rng.uniform(0, 360, g), rng.uniform(359.9, 360, 200), rng.uniform(0, 0.1, 200)]
    gdec = np.r_[rng.uniform(-20, 70, g), rng.uniform(-1, 1, 400)]
    got = ix.search(gra, gdec)
    hits = 0
    for k in range(gra.size):
        mra = MARGIN_DEG / np.cos(np.radians(gdec[k]))
        east = (gra[k] - (ra0 - mra)) % 360
        ok = (
            (east <= w + 2 * mra)
            & (gdec[k] >= dec0 - MARGIN_DEG)
            & (gdec[k] <= dec0 + 0.22 + MARGIN_DEG)
        )
        assert sorted(got[k]) == np.flatnonzero(ok).tolist()
        hits += int(ok.sum())
    assert hits > 100


def test_frames_table_one_row_per_field_is_five_frames():
    t = pa.table(
        {
            "run": [2583],
            "rerun": [301],
            "camcol": [2],
            "field": [136],
            "ra_min": [323.26],
            "ra_max": [323.42],
            "dec_min": [-0.85],
            "dec_max": [-0.62],
            "fieldID": [1],
        }
    )
    ix = FrameIndex.from_table(t)
    assert [r.band for r in ix.refs] == list("ugriz")
    assert ix.refs[2].sas_path == "frames/301/2583/2/frame-r-002583-2-0136.fits.bz2"
    assert [len(c) for c in ix.search([323.3, 323.5], [-0.7, -0.7])] == [5, 0]
