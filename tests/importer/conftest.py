"""An independent TF1 reference for `pz-import`: the authors' network (jpasquet/Photoz
network.py) rebuilt in tf.compat.v1 graph mode from the published facts, saved as a genuine
TF1 checkpoint in their exact layout, and run on inputs so an import can be checked.

Nothing here imports photoz_tools' model code: the point is an independent second opinion.
TensorFlow is imported lazily, and every graph lives in its own `tf.Graph` / `Session`, so
eager execution stays on for the rest of the pytest process (other tests use TF2/Keras).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

GLOBAL_STEP = 120000  # the authors' released checkpoint is `-120000` (empty prefix)
N_CLASSES = 180
N_TRAINABLE = 27_596_372
ADAM_DATA_BYTES = 3 * N_TRAINABLE * 4 + 8  # weights + Adam m + Adam v, + beta1/2_power
FLAT_FEATURES = 8 * 8 * 348 + 1  # NHWC flatten of I4_, then E(B-V) last


def _tf():
    """Import TensorFlow quietly, on first use only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


class _Builder:
    """The authors' layer helpers; `prelu_key` is the PReLU variable's name in each scope."""

    def __init__(self, tf, prelu_key: str, alpha_range, bias_range):
        self.tf = tf
        self.v1 = tf.compat.v1
        self.prelu_key = prelu_key
        # Random (not 0.1 / 0.25) biases and alphas, so a mis-mapped one changes outputs.
        self.bias_init = self.v1.random_uniform_initializer(*bias_range)
        self.alpha_init = self.v1.random_uniform_initializer(*alpha_range)
        self.weight_init = self.v1.glorot_uniform_initializer()
        self.ends: dict[str, object] = {}

    def conv2d(self, x, n_out: int, k: int, name: str):
        v1 = self.v1
        n_in = x.get_shape()[-1]
        with v1.variable_scope(name):
            b = v1.get_variable("biases", [n_out], initializer=self.bias_init)
            w = v1.get_variable("weights", [k, k, n_in, n_out], initializer=self.weight_init)
            y = self.tf.nn.bias_add(self.tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME"), b)
            a = self.prelu_alpha(n_out)
            y = self.tf.maximum(0.0, y) + a * self.tf.minimum(0.0, y)
        self.ends[name] = y
        return y

    def prelu_alpha(self, n_out: int):
        """The authors' `get_variable("prelu")` inside `name_scope("PRELU")`.

        TF >= 1.9 makes op names unique case-insensitively, so "<scope>/prelu" clashes with
        the "<scope>/PRELU" name scope and becomes "prelu_1": the real cause of the two
        spellings. The authors' code, run here, gives "prelu_1"; the TF < 1.9 "prelu" is had
        by creating the variable before entering the name scope.
        """
        v1 = self.v1
        if self.prelu_key == "prelu":
            alpha = v1.get_variable("prelu", [n_out], initializer=self.alpha_init)
        else:
            with v1.name_scope("PRELU"):
                alpha = v1.get_variable("prelu", [n_out], initializer=self.alpha_init)
        if alpha.op.name.rsplit("/", 1)[-1] != self.prelu_key:
            raise RuntimeError(f"PReLU variable came out as {alpha.op.name}, not {self.prelu_key}")
        return alpha

    def pool2d(self, x, kernel: int, stride: int):
        return self.tf.nn.avg_pool(x, [1, kernel, kernel, 1], [1, stride, stride, 1], "SAME")

    def fully_connected(self, x, n_out: int, name: str, withrelu: bool = True):
        v1 = self.v1
        n_in = x.get_shape()[-1]
        with v1.variable_scope(name):
            w = v1.get_variable("weights", [n_in, n_out], initializer=self.weight_init)
            b = v1.get_variable("biases", [n_out], initializer=self.bias_init)
            y = self.tf.nn.bias_add(self.tf.matmul(x, w), b)
            if withrelu:
                y = self.tf.nn.relu(y)
        self.ends[name] = y
        return y

    def inception(self, x, nb_s1: int, nb_s2: int, name: str, without_kernel_5: bool = False):
        with self.v1.variable_scope(name):
            s1_0 = self.conv2d(x, nb_s1, 1, name + "S1_0")
            s2_0 = self.conv2d(s1_0, nb_s2, 3, name + "S2_0")
            s1_2 = self.conv2d(x, nb_s1, 1, name + "S1_2")
            pool0 = self.pool2d(s1_2, 2, 1)
            if not without_kernel_5:
                s1_1 = self.conv2d(x, nb_s1, 1, name + "S1_1")
                s2_1 = self.conv2d(s1_1, nb_s2, 5, name + "S2_1")
            s2_2 = self.conv2d(x, nb_s2, 1, name + "S2_2")
            parts = [s2_2, s2_0, pool0] if without_kernel_5 else [s2_2, s2_1, s2_0, pool0]
            y = self.tf.concat(parts, axis=3)
        self.ends[name] = y
        return y

    def model(self, x, reddening):
        tf = self.tf
        conv0 = self.conv2d(x, 64, 5, "conv0")
        self.ends["conv0p"] = y = self.pool2d(conv0, 2, 2)
        y = self.inception(y, 48, 64, "I0_")
        y = self.inception(y, 64, 92, "I1_")
        y = self.pool2d(y, 2, 2)
        y = self.inception(y, 92, 128, "I2_")
        y = self.inception(y, 92, 128, "I3_")
        y = self.pool2d(y, 2, 2)
        y = self.inception(y, 92, 128, "I4_", without_kernel_5=True)
        self.ends["flat"] = y = tf.concat([tf.reshape(y, [-1, 8 * 8 * 348]), reddening], axis=1)
        y = self.fully_connected(y, 1096, "fc0")
        y = self.fully_connected(y, 1096, "fc0b")
        self.ends["logits"] = logits = self.fully_connected(y, N_CLASSES, "fc1", withrelu=False)
        self.ends["softmax"] = tf.nn.softmax(logits)
        return logits


def _build(tf, prelu_key: str, alpha_range=(0.05, 0.4), bias_range=(-0.05, 0.15)):
    """Placeholders + network in the current default graph; returns (x, reddening, ends)."""
    v1 = tf.compat.v1
    x = v1.placeholder(tf.float32, [None, 64, 64, 5], name="x")
    reddening = v1.placeholder(tf.float32, [None, 1], name="reddening")
    builder = _Builder(tf, prelu_key, alpha_range, bias_range)
    builder.model(x, reddening)
    return x, reddening, builder.ends


def _session(tf, graph):
    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=2, inter_op_parallelism_threads=1
    )
    return tf.compat.v1.Session(graph=graph, config=config)


def save_authors_checkpoint(
    folder: str | os.PathLike,
    seed: int = 0,
    prelu_key: str = "prelu",
    adam: bool = True,
    alpha_range: tuple[float, float] = (0.05, 0.4),
    adam_steps: int = 1,
) -> Path:
    """Write a TF1 checkpoint laid out as the authors' `pretrained_model/` and return `folder`.

    Files: `checkpoint`, `-120000.index`, `-120000.data-00000-of-00001`, `-120000.meta`.
    `prelu_key` "prelu" is the TF < 1.9 spelling, "prelu_1" the TF >= 1.9 one. With `adam`,
    an AdamOptimizer(1e-4) adds `<var>/Adam`, `<var>/Adam_1`, `beta1_power`, `beta2_power`,
    and `adam_steps` steps on a random batch make its slots non-zero (the saved weights are
    the post-step ones, i.e. what `authors_softmax` restores).
    """
    if prelu_key not in ("prelu", "prelu_1"):
        raise ValueError(f"prelu_key must be 'prelu' or 'prelu_1', not {prelu_key!r}")
    tf = _tf()
    v1 = tf.compat.v1
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        x, reddening, ends = _build(tf, prelu_key, alpha_range)
        train = None
        if adam:
            labels = v1.placeholder(tf.int32, [None], name="labels")
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=ends["logits"])
            )
            train = v1.train.AdamOptimizer(1e-4).minimize(loss)
        # Relative paths: the authors' 71-byte `checkpoint` file names plain "-120000".
        saver = v1.train.Saver(save_relative_paths=True)
        init = v1.global_variables_initializer()
    with _session(tf, graph) as sess:
        sess.run(init)
        if train is not None and adam_steps:
            images, ebv = random_inputs(2, seed=seed + 1000)
            target = np.random.default_rng(seed).integers(0, N_CLASSES, len(images))
            for _ in range(adam_steps):
                sess.run(train, {x: images, reddening: ebv, labels: target})
        # Empty prefix, as the authors did: saving to "folder/" gives "folder/-120000.*".
        saver.save(sess, str(folder) + os.sep, global_step=GLOBAL_STEP)
    return folder


def authors_trainable_shapes(prelu_key: str = "prelu") -> dict[str, tuple[int, ...]]:
    """Name -> shape of every trainable variable of the network, from a fresh graph (no init)."""
    return dict(_trainable_shapes(prelu_key))


@functools.cache
def _trainable_shapes(prelu_key: str) -> dict[str, tuple[int, ...]]:
    tf = _tf()
    graph = tf.Graph()
    with graph.as_default():
        _build(tf, prelu_key)
        variables = tf.compat.v1.trainable_variables()
        return {v.op.name: tuple(v.shape.as_list()) for v in variables}


def read_checkpoint(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of the latest checkpoint in `folder`, by name (no graph needed)."""
    tf = _tf()
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(folder)))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def checkpoint_prelu_key(folder: str | os.PathLike) -> str:
    """ "prelu" or "prelu_1": how this checkpoint spells the PReLU variables."""
    tf = _tf()
    names = {name for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(str(folder)))}
    if "conv0/prelu_1" in names:
        return "prelu_1"
    if "conv0/prelu" in names:
        return "prelu"
    raise ValueError(f"no conv0/prelu or conv0/prelu_1 in the checkpoint in {folder}")


def authors_outputs(
    folder: str | os.PathLike,
    images: np.ndarray,
    ebv: np.ndarray,
    names: tuple[str, ...] = ("softmax",),
    batch: int = 64,
) -> dict[str, np.ndarray]:
    """Restore `folder` into a fresh TF1 graph and run the named tensors on the inputs.

    Names are a conv's scope ("conv0", "I0_S2_0"...), an inception ("I0_"...), "conv0p"
    (conv0 + first pool), "flat" (22273 features), "fc0", "fc0b", "logits", "softmax".
    """
    tf = _tf()
    v1 = tf.compat.v1
    images = np.asarray(images, np.float32)
    ebv = np.asarray(ebv, np.float32).reshape(-1, 1)
    if images.shape[1:] != (64, 64, 5) or len(ebv) != len(images):
        raise ValueError(f"want (N,64,64,5) images and (N,1) ebv, got {images.shape} {ebv.shape}")
    prelu_key = checkpoint_prelu_key(folder)
    graph = tf.Graph()
    with graph.as_default():
        x, reddening, ends = _build(tf, prelu_key)
        fetches = {name: ends[name] for name in names}
        saver = v1.train.Saver()  # model variables only: the checkpoint's Adam slots are skipped
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    with _session(tf, graph) as sess:
        saver.restore(sess, tf.train.latest_checkpoint(str(folder)))
        for start in range(0, len(images), batch):
            got = sess.run(
                fetches,
                {x: images[start : start + batch], reddening: ebv[start : start + batch]},
            )
            for name in names:
                out[name].append(got[name])
    return {name: np.concatenate(parts) for name, parts in out.items()}


def authors_softmax(
    folder: str | os.PathLike, images: np.ndarray, ebv: np.ndarray, batch: int = 64
) -> np.ndarray:
    """The TF1 graph's (N, 180) softmax for (N,64,64,5) images and (N,1) E(B-V), float32."""
    return authors_outputs(folder, images, ebv, ("softmax",), batch)["softmax"]


def random_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N,64,64,5) images in nanomaggy-like units and (N,1) E(B-V), both float32.

    A N(0, 0.05) sky plus 1-3 positive Gaussian blobs near the centre peaking at ~5-50
    nanomaggies with per-band colours, so activations span a realistic dynamic range.
    """
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.05, (n, 64, 64, 5))
    yy, xx = np.mgrid[0:64, 0:64] - 31.5
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.normal(0.0, 2.0, 2)
            sigma = rng.uniform(1.5, 6.0)
            profile = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
            peak = rng.uniform(5.0, 50.0) * rng.uniform(0.2, 1.0, 5)  # ugriz colours
            images[i] += profile[:, :, None] * peak
    ebv = rng.uniform(0.01, 0.1, (n, 1))
    return images.astype(np.float32), ebv.astype(np.float32)


@pytest.fixture(scope="session")
def authors_checkpoint(tmp_path_factory) -> Path:
    """The authors' layout with TF >= 1.9 PReLU names (`prelu_1`) and Adam slots, seed 0."""
    return save_authors_checkpoint(
        tmp_path_factory.mktemp("authors_prelu_1"), seed=0, prelu_key="prelu_1", adam=True
    )


@pytest.fixture(scope="session")
def authors_checkpoint_old(tmp_path_factory) -> Path:
    """The same layout with TF < 1.9 PReLU names (`prelu`), seed 1, so weights differ too."""
    return save_authors_checkpoint(
        tmp_path_factory.mktemp("authors_prelu"), seed=1, prelu_key="prelu", adam=True
    )


@pytest.fixture(scope="session")
def tf1ref():
    """The helpers above, for tests (importlib mode cannot import conftest by name)."""

    class TF1Reference:
        save = staticmethod(save_authors_checkpoint)
        softmax = staticmethod(authors_softmax)
        outputs = staticmethod(authors_outputs)
        read = staticmethod(read_checkpoint)
        prelu_key = staticmethod(checkpoint_prelu_key)
        trainable_shapes = staticmethod(authors_trainable_shapes)
        inputs = staticmethod(random_inputs)
        global_step = GLOBAL_STEP
        n_trainable = N_TRAINABLE
        adam_data_bytes = ADAM_DATA_BYTES
        flat_features = FLAT_FEATURES

    return TF1Reference
