"""Checks of two recipe details of the paper that nothing else pins down exactly.

1. Augmentation: training images get a random one of the 8 symmetries of the square
   (rotations by 90 degrees and flips, the dihedral group D4), applied per galaxy, to all five
   bands together, with no interpolation; the training feed applies it only when asked, and
   prediction applies none (or, with tta=True, averages over all 8).
2. The ensemble: a bundle's PDF is the plain mean of its members' PDFs, each member as stored
   in the bundle and loaded on its own.

A silent change to either (a transposed convention, a mixed band, an augmented prediction, a
weighted or a single-member "ensemble") would still train and predict, just worse, so each is
checked against an independent computation here.

The convention of `data.transform(images, k)` for images[n, y, x, band]: k in 0..3 rotates by
90*k degrees, as ``np.rot90(images, k, axes=(1, 2))`` (from the y axis towards the x axis: drawn
with y down, counter-clockwise); k in 4..7 rotates by 90*(k-4) degrees *then* mirrors x,
``np.flip(np.rot90(images, k % 4, axes=(1, 2)), axis=2)``.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from photoz_tools import tables
from photoz_tools.model import data
from photoz_tools.pdf import Bins

# chi-square critical value for 7 degrees of freedom at p = 1e-4 (scipy.stats.chi2.isf(1e-4, 7))
CHI2_7DOF_P1E4 = 29.88


def _expected(images: np.ndarray, k: int) -> np.ndarray:
    """The documented convention, written independently of data.transform."""
    out = np.rot90(images, k % 4, axes=(1, 2))
    return np.flip(out, axis=2) if k >= 4 else out


def _all_transforms(images: np.ndarray) -> np.ndarray:
    """(8, n, ...) : the 8 symmetries of each image, by the documented convention."""
    return np.stack([_expected(images, k) for k in range(8)])


def _which_transform(out: np.ndarray, images: np.ndarray) -> np.ndarray:
    """(8, n) bool: does out[i] equal transform k of images[i] exactly (all bands)?"""
    t = _all_transforms(images)
    return (t == out[None]).reshape(8, len(images), -1).all(axis=2)


def _key(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image, np.float32).tobytes()).digest()


# --------------------------------------------------------------------------- transform


def test_transform_follows_the_documented_convention():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 64, 64, 5)).astype(np.float32)
    for k in range(8):
        got = data.transform(images, k)
        assert got.shape == images.shape and got.dtype == images.dtype
        np.testing.assert_array_equal(got, _expected(images, k), err_msg=f"k={k}")
    # the same, spelled out on one marked pixel at (y=0, x=1) of a 4x4 image
    one = np.zeros((1, 4, 4, 5), np.float32)
    one[0, 0, 1, :] = 1.0
    where = {
        0: (0, 1),  # identity
        1: (2, 0),  # 90 degrees: out[y, x] = in[x, W-1-y]
        2: (3, 2),  # 180 degrees
        3: (1, 3),  # 270 degrees
        4: (0, 2),  # x mirror: out[y, x] = in[y, W-1-x]
        5: (2, 3),  # 90 degrees, then x mirror
        6: (3, 1),  # 180 degrees, then x mirror (= y mirror)
        7: (1, 0),  # 270 degrees, then x mirror (= transpose)
    }
    for k, yx in where.items():
        got = data.transform(one, k)
        assert np.argwhere(got[0, :, :, 0]).tolist() == [list(yx)], f"k={k}"
        assert (got[0, yx[0], yx[1], :] == 1).all()  # every band moves with the pixel


def test_the_8_transforms_are_distinct_and_form_the_dihedral_group():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(1, 9, 9, 2)).astype(np.float32)  # no symmetry at all
    outs = [data.transform(images, k) for k in range(8)]
    for a in range(8):
        for b in range(a + 1, 8):
            assert not np.array_equal(outs[a], outs[b]), (a, b)
    np.testing.assert_array_equal(outs[0], images)  # k=0 is the identity
    keys = {_key(o): k for k, o in enumerate(outs)}
    # closed under composition (a group of 8 elements: D4), and every element has an inverse
    for a in range(8):
        composed = [keys.get(_key(data.transform(outs[a], b))) for b in range(8)]
        assert None not in composed and sorted(composed) == list(range(8)), a
    assert {keys[_key(data.transform(outs[k], 4))] for k in range(8)} == set(range(8))


# --------------------------------------------------------------------------- augment


def test_augment_draws_each_of_the_8_symmetries_uniformly_per_galaxy():
    n = 4000
    rng = np.random.default_rng(2)
    images = rng.normal(size=(n, 6, 6, 5)).astype(np.float32)  # generically asymmetric
    before = images.copy()
    out = data.augment(images, np.random.default_rng(123))
    np.testing.assert_array_equal(images, before)  # the input is left alone
    assert out.shape == images.shape and out.dtype == images.dtype

    match = _which_transform(out, images)
    # each image's 8 transforms are distinct, so an exact match names the transform used
    distinct = ~_which_transform(_expected(images, 0), images)[1:]
    assert distinct.all()
    assert (match.sum(axis=0) == 1).all(), "an output that is not one symmetry of its input"
    counts = match.sum(axis=1)
    assert (counts > 0).all(), f"not all 8 symmetries drawn: {counts}"
    expected = n / 8
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_7DOF_P1E4, f"counts {counts.tolist()} are not uniform (chi2={chi2:.1f})"
    assert (np.abs(counts - expected) < 0.25 * expected).all(), counts.tolist()


def test_augment_is_deterministic_for_a_seed():
    rng = np.random.default_rng(3)
    images = rng.normal(size=(64, 8, 8, 5)).astype(np.float32)
    a = data.augment(images, np.random.default_rng([7, 0, 1, 2]))
    b = data.augment(images, np.random.default_rng([7, 0, 1, 2]))
    c = data.augment(images, np.random.default_rng([7, 0, 2, 2]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# --------------------------------------------------------------------------- the training feed


def _feed_items(path, augment: bool, batch_size: int = 16):
    """Every item of one epoch of TrainingBatches, and the selection it streams."""
    pytest.importorskip("keras")
    from photoz_tools.model.feed import TrainingBatches

    sel = data.select_rows(str(path), Bins.default(), val_size=10, seed=4)
    feed = TrainingBatches(sel, batch_size=batch_size, seed=5, augment=augment)
    items = list(feed.iterate(0))  # (inputs, labels, weights) per batch of epoch 0
    assert len(items) == len(sel.train_rows) // batch_size
    return sel, items


@pytest.mark.parametrize("augment", [True, False], ids=["augment", "no-augment"])
def test_training_batches_are_symmetries_of_the_stored_images(make_dataset, tmp_path, augment):
    path = make_dataset(tmp_path / "d.parquet", 100, seed=11)
    stored = tables.column_array(tables.read_table(path), "image")
    # a table of every symmetry of every stored image: pixel noise makes them all unique
    lookup = {}
    for k in range(8):
        for row, im in enumerate(_expected(stored, k)):
            lookup[_key(im)] = (row, k)
    assert len(lookup) == 8 * len(stored)

    sel, items = _feed_items(path, augment)
    train = set(sel.train_rows.tolist())
    seen_rows, seen_k = [], []
    for x, y, *_ in items:
        assert x["image"].dtype == np.float32 and x["image"].shape[1:] == (64, 64, 5)
        found = [lookup.get(_key(im)) for im in x["image"]]
        assert None not in found, "a batch image is no symmetry of any stored image"
        rows = np.array([r for r, _ in found])
        assert set(rows.tolist()) <= train and len(set(rows.tolist())) == len(rows)
        # the other inputs and the labels belong to the same rows as the images
        np.testing.assert_array_equal(np.asarray(x["ebv"]).reshape(-1), sel.ebv[rows])
        np.testing.assert_array_equal(np.asarray(y), sel.labels[rows])
        seen_rows += rows.tolist()
        seen_k += [k for _, k in found]
    assert len(set(seen_rows)) == len(seen_rows)  # no row twice in an epoch
    if augment:
        counts = np.bincount(seen_k, minlength=8)
        # ~80 draws over 8 symmetries: all but a very unlikely few appear
        assert (counts > 0).sum() >= 6, counts.tolist()
        assert counts[0] < len(seen_k) / 2, counts.tolist()
    else:
        assert set(seen_k) == {0}  # exactly the stored pixels


# --------------------------------------------------------------------------- prediction


def _inputs(catalog, n: int = 20):
    t = tables.read_table(catalog)
    images = tables.column_array(t, "image")[:n].astype(np.float32)
    ebv = np.asarray(tables.column_array(t, "ebv"), np.float32)[:n]
    return images, ebv


def _members_loaded_independently(bundle_path):
    """Each member file of the bundle, loaded on its own with plain keras in safe mode."""
    pytest.importorskip("keras")
    import keras

    import photoz_tools.model.architecture  # noqa: F401  (registers the custom layer)

    manifest = json.loads((bundle_path / "manifest.json").read_text())
    files = [m["file"] for m in manifest["members"]]
    assert len(files) == 2
    return [keras.saving.load_model(bundle_path / f, safe_mode=True) for f in files]


def _direct(model, images: np.ndarray, ebv: np.ndarray) -> np.ndarray:
    x = {"image": np.ascontiguousarray(images), "ebv": ebv.reshape(-1, 1)}
    p = np.asarray(model.predict_on_batch(x), dtype=np.float64)
    q = np.asarray(model(x, training=False), dtype=np.float64)
    np.testing.assert_allclose(p, q, atol=1e-6)  # the two ways of calling a model agree
    return p


def test_bundle_pdf_is_the_mean_of_independently_loaded_members(tiny_bundle, catalog):
    from photoz_tools.model.predict import predict_arrays

    images, ebv = _inputs(catalog)
    members = _members_loaded_independently(tiny_bundle)
    per_member = [_direct(m, images, ebv) for m in members]
    for p in per_member:
        assert p.shape == (len(images), Bins.default().n)
        np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
        assert (p >= 0).all()
    # two members trained with different seeds: a wrong weighting would show
    assert np.abs(per_member[0] - per_member[1]).max() > 1e-3

    got = predict_arrays(tiny_bundle, images, ebv, batch_size=32)
    assert got.shape == per_member[0].shape
    np.testing.assert_allclose(got, np.mean(per_member, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)
    for p in per_member:  # not one member standing in for the ensemble
        assert np.abs(got - p).max() > 1e-4


def test_prediction_applies_no_augmentation_and_tta_averages_the_8(tiny_bundle, catalog):
    from photoz_tools.model import bundle as bundlemod
    from photoz_tools.model.predict import predict_arrays

    images, ebv = _inputs(catalog, 12)
    members = _members_loaded_independently(tiny_bundle)

    def mean_direct(ims):
        return np.mean([_direct(m, ims, ebv) for m in members], axis=0)

    per_k = [mean_direct(data.transform(images, k)) for k in range(8)]
    # the network is not invariant to the symmetries, so an augmented prediction would show
    assert min(np.abs(per_k[k] - per_k[0]).max() for k in range(1, 8)) > 1e-5

    b = bundlemod.load_bundle(tiny_bundle)
    first = predict_arrays(b, images, ebv, batch_size=16)
    second = predict_arrays(b, images, ebv, batch_size=16)
    np.testing.assert_array_equal(first, second)  # nothing random at prediction time
    np.testing.assert_allclose(first, per_k[0], rtol=1e-5, atol=1e-6)  # untransformed inputs

    tta = predict_arrays(b, images, ebv, batch_size=16, tta=True)
    np.testing.assert_allclose(tta, np.mean(per_k, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tta.sum(axis=1), 1, atol=1e-5)
    assert np.abs(tta - first).max() > 1e-6
