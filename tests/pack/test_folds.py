"""Folds and splits: seeded, balanced, independent of row order, stratified in z."""

from __future__ import annotations

import numpy as np
import pytest

from photoz_tools.dataset import (
    MISSING_BAND,
    NONFINITE,
    assign_folds,
    assign_splits,
    image_flags,
    mgs_mask,
)
from photoz_tools.errors import PzUsageError


@pytest.mark.parametrize("stratified", [False, True])
def test_folds_balanced_seeded_and_order_free(stratified):
    rng = np.random.default_rng(3)
    ids = rng.permutation(10_003).astype(np.int64) * 11
    z = rng.gamma(2.0, 0.05, len(ids))
    f = assign_folds(ids, z if stratified else None, 5, seed=7)
    counts = np.bincount(f, minlength=5)
    assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(f, assign_folds(ids, z if stratified else None, 5, seed=7))
    assert (f != assign_folds(ids, z if stratified else None, 5, seed=8)).mean() > 0.5
    perm = rng.permutation(len(ids))  # another row order: the same fold per id
    g = assign_folds(ids[perm], (z[perm] if stratified else None), 5, seed=7)
    np.testing.assert_array_equal(g, f[perm])


def test_stratified_folds_share_the_z_distribution():
    rng = np.random.default_rng(4)
    z = rng.gamma(2.0, 0.05, 20_000)
    ids = np.arange(len(z))
    f = assign_folds(ids, z, 5, seed=0)
    qs = np.array([np.quantile(z[f == k], [0.1, 0.5, 0.9]) for k in range(5)])
    assert np.ptp(qs, axis=0).max() < 2e-3  # random folds differ by ~5e-3 here
    # and each consecutive block of 5 in z holds every fold once
    order = np.argsort(z)
    blocks = f[order][: 5 * (len(z) // 5)].reshape(-1, 5)
    assert (np.sort(blocks, axis=1) == np.arange(5)).all()


def test_splits_test_fold_and_validation_count_or_fraction():
    ids = np.arange(1000)
    fold = assign_folds(ids, None, 5, seed=0)
    s = assign_splits(ids, fold, test_fold=2, validation=0.1, seed=0)
    assert ((s == 2) == (fold == 2)).all()
    assert (s == 1).sum() == 80 and not ((s == 1) & (fold == 2)).any()
    s = assign_splits(ids, fold, test_fold=None, validation=123, seed=0)
    assert (s == 2).sum() == 0 and (s == 1).sum() == 123
    with pytest.raises(PzUsageError, match="--validation"):
        assign_splits(ids, fold, test_fold=0, validation=900, seed=0)


def test_image_flags_nan_and_missing_band():
    img = np.random.default_rng(0).normal(size=(4, 64, 64, 5)).astype(np.float32)
    img[1, 3, 3, 2] = np.nan
    img[2, :, :, 0] = 0.0
    nf = np.full((4, 5), 2, np.int16)
    nf[3, 4] = 0
    f = image_flags(img, nf)
    assert f.tolist() == [0, NONFINITE, MISSING_BAND, MISSING_BAND]


def test_mgs_cut_where_columns_exist():
    cols = {
        "dered_petro_r": np.array([17.0, 17.9, 17.8, 16.0]),
        "Z": np.array([0.1, 0.1, 0.4, 0.41]),
    }
    notes = []
    keep = mgs_mask(cols, 4, notes.append)
    assert keep.tolist() == [True, False, True, False]
    assert any("primtarget" in n for n in notes)


def test_image_flags_exact_where_squares_overflow_or_underflow():
    img = np.zeros((3, 64, 64, 5), np.float32) + 1
    img[0, 0, 0, 1] = 1e30  # finite, its square is inf
    img[1, :, :, 3] = 0
    img[1, 7, 7, 3] = 1e-30  # not an empty band, its square is 0
    img[2, 1, 1, 4] = -np.inf
    assert image_flags(img).tolist() == [0, 0, NONFINITE]
