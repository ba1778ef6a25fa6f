"""Self-checks of the TF1 reference in conftest.py: it must be right on its own before an
import is judged against it (layout, names, sizes, outputs, and a numpy re-computation)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")

DATA = "-120000.data-00000-of-00001"
CONVS_PER_INCEPTION = {"I0_": 6, "I1_": 6, "I2_": 6, "I3_": 6, "I4_": 4}


def _is_slot(name: str) -> bool:
    return name.endswith(("/Adam", "/Adam_1")) or name in ("beta1_power", "beta2_power")


# --- numpy re-implementation of the pieces checked below ----------------------------------


def np_conv_same(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Stride-1 SAME conv, NHWC x HWIO, odd kernel, in float64."""
    k = w.shape[0]
    p = (k - 1) // 2
    xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))  # N,H,W,C,k,k
    return np.einsum("nhwcij,ijco->nhwo", win, w.astype(np.float64), optimize=True) + b


def np_prelu(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, x) + alpha * np.minimum(0.0, x)


def np_avg_pool_same(x: np.ndarray, stride: int) -> np.ndarray:
    """2x2 average pool, TF SAME: the pad (after, only) is left out of the count."""
    n, h, w, c = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    pad_h = max((oh - 1) * stride + 2 - h, 0)
    pad_w = max((ow - 1) * stride + 2 - w, 0)
    xp = np.pad(
        x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    )
    ones = np.pad(
        np.ones((h, w)), ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
    )
    total = np.zeros((n, oh, ow, c))
    count = np.zeros((oh, ow))
    for i in range(2):
        for j in range(2):
            sl = (slice(i, i + stride * oh, stride), slice(j, j + stride * ow, stride))
            total += xp[:, sl[0], sl[1], :]
            count += ones[sl]
    return total / count[None, :, :, None]


def np_conv_block(x, ck, scope, alpha_key):
    return np_prelu(
        np_conv_same(x, ck[f"{scope}/weights"], ck[f"{scope}/biases"]), ck[f"{scope}/{alpha_key}"]
    )


# --- layout ------------------------------------------------------------------------------


def test_files_and_data_size_match_the_authors_layout(authors_checkpoint, tf1ref):
    names = sorted(os.listdir(authors_checkpoint))
    assert names == sorted(["checkpoint", "-120000.index", DATA, "-120000.meta"])
    assert (authors_checkpoint / DATA).stat().st_size == 331_156_472 == tf1ref.adam_data_bytes
    text = (authors_checkpoint / "checkpoint").read_text()
    # The released `checkpoint` is 71 bytes: relative "-120000" paths, empty prefix.
    assert text == 'model_checkpoint_path: "-120000"\nall_model_checkpoint_paths: "-120000"\n'
    assert tf.train.latest_checkpoint(str(authors_checkpoint)).endswith(os.sep + "-120000")


@pytest.mark.parametrize(
    "fixture,key", [("authors_checkpoint", "prelu_1"), ("authors_checkpoint_old", "prelu")]
)
def test_variable_names_and_shapes(request, tf1ref, fixture, key):
    folder = request.getfixturevalue(fixture)
    shapes = dict(tf.train.list_variables(tf.train.latest_checkpoint(str(folder))))
    other = "prelu" if key == "prelu_1" else "prelu_1"
    assert tf1ref.prelu_key(folder) == key
    assert shapes["conv0/weights"] == [5, 5, 5, 64]
    assert shapes[f"conv0/{key}"] == [64]
    assert not any(n.endswith("/" + other) for n in shapes)
    assert shapes["I0_/I0_S2_1/weights"] == [5, 5, 48, 64]
    assert shapes["I4_/I4_S1_0/weights"] == [1, 1, 476, 92]
    assert not any(n.startswith(("I4_/I4_S1_1/", "I4_/I4_S2_1/")) for n in shapes)
    assert shapes["fc0/weights"] == [22273, 1096] and shapes["fc0/biases"] == [1096]
    assert shapes["fc0b/weights"] == [1096, 1096]
    assert shapes["fc1/weights"] == [1096, 180] and shapes["fc1/biases"] == [180]
    assert shapes["beta1_power"] == [] and shapes["beta2_power"] == []
    for name in ("conv0/weights", f"I2_/I2_S2_0/{key}", "fc1/biases"):
        assert shapes[name + "/Adam"] == shapes[name + "/Adam_1"] == shapes[name]
    model = {n: s for n, s in shapes.items() if not _is_slot(n)}
    for scope, n_convs in CONVS_PER_INCEPTION.items():
        assert len([n for n in model if n.startswith(scope) and n.endswith("/weights")]) == n_convs
    # Each model variable has both Adam slots; nothing else is in the file.
    assert len(shapes) == 3 * len(model) + 2
    assert model == {n: list(s) for n, s in tf1ref.trainable_shapes(key).items()}


def test_trainable_count_is_the_papers(authors_checkpoint, tf1ref):
    ck = tf1ref.read(authors_checkpoint)
    model = {n: v for n, v in ck.items() if not _is_slot(n)}
    assert sum(v.size for v in model.values()) == 27_596_372 == tf1ref.n_trainable
    assert sum(int(np.prod(s)) for s in tf1ref.trainable_shapes().values()) == 27_596_372
    assert all(v.dtype == np.float32 for v in ck.values())


def test_alphas_biases_and_adam_slots_are_non_trivial(authors_checkpoint, tf1ref):
    """Random per-channel alphas/biases make a mis-mapped one visible; one Adam step ran."""
    ck = tf1ref.read(authors_checkpoint)
    alphas = {n: v for n, v in ck.items() if n.endswith("/prelu_1")}
    assert len(alphas) == 1 + sum(CONVS_PER_INCEPTION.values())
    for name, a in alphas.items():
        assert np.all(a > 0.04) and np.all(a < 0.41), name
        assert np.unique(a).size == a.size, name
    for name in ("conv0/biases", "I3_/I3_S2_2/biases", "fc0/biases", "fc1/biases"):
        assert np.unique(ck[name]).size == ck[name].size, name
    assert np.isclose(ck["beta1_power"], 0.9**2) and np.isclose(ck["beta2_power"], 0.999**2)
    assert np.any(ck["fc1/weights/Adam"] != 0) and np.all(ck["fc1/weights/Adam_1"] >= 0)


# --- outputs -----------------------------------------------------------------------------


def test_softmax_is_a_distribution_deterministic_and_seed_dependent(
    authors_checkpoint, authors_checkpoint_old, tf1ref
):
    images, ebv = tf1ref.inputs(4, seed=3)
    # The same images twice, the second time with E(B-V) + 0.5: one restore covers both.
    images, ebv = np.concatenate([images, images]), np.concatenate([ebv, ebv + 0.5])
    p = tf1ref.softmax(authors_checkpoint, images, ebv, batch=4)
    assert p.shape == (8, 180)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(p, tf1ref.softmax(authors_checkpoint, images, ebv, batch=4))
    assert np.abs(p - tf1ref.softmax(authors_checkpoint_old, images, ebv, batch=4)).max() > 1e-3
    # Rows depend on the image and on E(B-V), so a comparison is not against a constant.
    assert np.abs(p[:4] - p[3::-1]).max() > 1e-4
    assert np.abs(p[:4] - p[4:]).max() > 1e-6
    assert tf.executing_eagerly()


def test_numpy_recomputation_of_conv0_pool_and_first_inception(authors_checkpoint, tf1ref):
    """conv0+PReLU+pool and I0_ (incl. the stride-1 SAME pool) redone in numpy."""
    images, ebv = tf1ref.inputs(2, seed=7)
    ck = tf1ref.read(authors_checkpoint)
    got = tf1ref.outputs(authors_checkpoint, images, ebv, ("conv0p", "I0_"))
    conv0p = np_avg_pool_same(np_conv_block(images, ck, "conv0", "prelu_1"), 2)
    assert conv0p.shape == (2, 32, 32, 64)
    np.testing.assert_allclose(got["conv0p"], conv0p, rtol=1e-4, atol=1e-4)

    x = got["conv0p"].astype(np.float64)
    conv = {
        s: np_conv_block(src, ck, f"I0_/I0_{s}", "prelu_1")
        for s, src in (("S1_0", x), ("S1_1", x), ("S1_2", x), ("S2_2", x))
    }
    s2_0 = np_conv_block(conv["S1_0"], ck, "I0_/I0_S2_0", "prelu_1")
    s2_1 = np_conv_block(conv["S1_1"], ck, "I0_/I0_S2_1", "prelu_1")
    pool0 = np_avg_pool_same(conv["S1_2"], 1)
    i0 = np.concatenate([conv["S2_2"], s2_1, s2_0, pool0], axis=3)
    assert i0.shape == (2, 32, 32, 240)
    scale = np.abs(i0).max()
    np.testing.assert_allclose(got["I0_"], i0, rtol=1e-4, atol=1e-5 * scale)


def test_numpy_recomputation_of_the_head(authors_checkpoint, tf1ref):
    """flat (NHWC order, E(B-V) last) -> fc0 -> fc0b -> fc1 -> softmax, redone in numpy."""
    images, ebv = tf1ref.inputs(3, seed=11)
    ck = tf1ref.read(authors_checkpoint)
    got = tf1ref.outputs(authors_checkpoint, images, ebv, ("I4_", "flat", "softmax"))
    assert got["I4_"].shape == (3, 8, 8, 348)
    flat = np.concatenate([got["I4_"].reshape(3, -1), ebv], axis=1).astype(np.float64)
    np.testing.assert_array_equal(got["flat"], flat.astype(np.float32))
    assert flat.shape[1] == tf1ref.flat_features == 22273
    h = np.maximum(0, flat @ ck["fc0/weights"] + ck["fc0/biases"])
    h = np.maximum(0, h @ ck["fc0b/weights"] + ck["fc0b/biases"])
    logits = h @ ck["fc1/weights"] + ck["fc1/biases"]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got["softmax"], p, rtol=1e-4, atol=1e-6)


def test_eager_execution_is_left_on(authors_checkpoint, tf1ref):
    """Other tests in this process use TF2/Keras eagerly: the graphs must not leak."""
    tf1ref.softmax(authors_checkpoint, *tf1ref.inputs(1, seed=0))
    assert tf.executing_eagerly()
    assert float(tf.reduce_sum(tf.ones([2]))) == 2.0
