"""The Pasquet et al. 2019 classifier as a small function of a config (Keras 3, any backend).

`build_model(config)` builds the layers in the order one draws the network (design brief):
input scaling, C1 5x5 conv + PReLU, average-pool, the inception blocks with their pools,
flatten, concatenate E(B-V), the fully connected layers and the 180-way softmax. Only keras.layers
and keras.ops are used here so that the same model runs under TensorFlow and JAX.

Configs are small TOML files (``configs/paper.toml`` is the released network, 27,596,372 trainable
parameters); ``load_config`` accepts a name of a bundled config or a path.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from photoz_tools.errors import PzUsageError
from photoz_tools.model.backend import import_keras

keras = import_keras()
layers, ops = keras.layers, keras.ops

IMAGE_SHAPE = (64, 64, 5)
# the layers' data format is pinned: a user's ~/.keras/keras.json must not change the network
FORMAT = "channels_last"
SCALINGS = ("none", "signed_sqrt")
BUILTIN_CONFIGS = ("paper", "small", "tiny")


def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """A bundled config by name ('paper', 'small', 'tiny') or a TOML file by path."""
    text = _config_text(name_or_path)
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PzUsageError(f"--arch {name_or_path}: not valid TOML ({exc})") from None
    return normalize_config(config, str(name_or_path))


def _config_text(name_or_path: str | Path) -> str:
    if str(name_or_path) in BUILTIN_CONFIGS:
        configs = resources.files("photoz_tools.model") / "configs"
        return (configs / f"{name_or_path}.toml").read_text()
    path = Path(name_or_path)
    if not path.is_file():
        raise PzUsageError(
            f"--arch {name_or_path}: neither a built-in architecture "
            f"({', '.join(BUILTIN_CONFIGS)}) nor a TOML file"
        )
    return path.read_text()


def normalize_config(config: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Fill defaults and check the fields, so a bundle's manifest records a complete config."""
    out = {
        "name": str(config.get("name", "custom")),
        "conv1": int(config.get("conv1", 64)),
        "blocks": [],
        "last_without_5x5": bool(config.get("last_without_5x5", True)),
        "dense": [int(d) for d in config.get("dense", [1096, 1096])],
        "n_bins": int(config.get("n_bins", 180)),
        "scaling": str(config.get("scaling", "none")),
        "train": _train_defaults(config.get("train", {}), where),
    }
    for b in config.get("blocks", []):
        if b == "pool":
            out["blocks"].append("pool")
        elif isinstance(b, list) and len(b) == 2:
            out["blocks"].append([int(b[0]), int(b[1])])
        else:
            raise PzUsageError(f'{where}: block {b!r} is neither "pool" nor [n1, n2]')
    if out["scaling"] not in SCALINGS:
        raise PzUsageError(f"{where}: scaling {out['scaling']!r} is not one of {SCALINGS}")
    unknown = set(config) - set(out)
    if unknown:
        raise PzUsageError(f"{where}: unknown keys {sorted(unknown)}")
    return out


TRAIN_KEYS = {"learning_rate": float, "warmup_steps": int}


def _train_defaults(table: Any, where: str) -> dict[str, Any]:
    """A config's recommended recipe ([train]: learning_rate, warmup_steps), which pz-train
    uses where its options are not given: the paper keeps its recipe, the small variants learn
    faster with their own (measured, BENCHMARKS.md)."""
    if not isinstance(table, dict) or set(table) - set(TRAIN_KEYS):
        raise PzUsageError(f"{where}: [train] takes only {sorted(TRAIN_KEYS)}")
    return {k: TRAIN_KEYS[k](v) for k, v in table.items()}


@keras.saving.register_keras_serializable(package="photoz_tools")
class InputScaling(layers.Layer):
    """The input stretch, stored in the model so no caller has to remember it.

    'none' feeds nanomaggies as they are (the authors' choice); 'signed_sqrt' is
    sign(x) * sqrt(|x|), the stretch of the group's later work, which tames the dynamic range.
    """

    def __init__(self, mode: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in SCALINGS:
            raise ValueError(f"unknown input scaling {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "signed_sqrt":
            return ops.sign(x) * ops.sqrt(ops.abs(x))
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


def layer_seed(seed: int | None, k: int) -> int | None:
    """The initialiser seed of layer `k` of a network seeded `seed`: independent streams from
    numpy's SeedSequence, below 2**31 so that every backend's seed dtype holds them."""
    if seed is None:
        return None
    return int(np.random.SeedSequence(int(seed), spawn_key=(int(k),)).generate_state(1)[0] >> 1)


def _conv(x, filters: int, size: int, name: str, seed: int | None):
    """Every conv of the paper: stride 1, 'same', Xavier weights, bias 0.1, per-channel PReLU."""
    x = layers.Conv2D(
        filters,
        size,
        padding="same",
        data_format=FORMAT,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        bias_initializer=keras.initializers.Constant(0.1),
        name=name,
    )(x)
    return layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(x)


def _inception(x, n1: int, n2: int, name: str, with_5x5: bool, seed: int | None, k0: int):
    """Branches A 1x1(n2); B 1x1(n1)->3x3(n2); C 1x1(n1)->5x5(n2); D 1x1(n1)->avg-pool s1,
    concatenated in the authors' order [A, C, B, D] ([s2_2, s2_1, s2_0, pool0] in their
    network.py; [A, B, D] without the 5x5): their weights only fit this order."""

    def s(k: int) -> int | None:
        return layer_seed(seed, k0 + k)

    a = _conv(x, n2, 1, f"{name}_a1x1", s(1))
    b = _conv(_conv(x, n1, 1, f"{name}_b1x1", s(2)), n2, 3, f"{name}_b3x3", s(3))
    branches = [a]
    if with_5x5:
        c = _conv(_conv(x, n1, 1, f"{name}_c1x1", s(4)), n2, 5, f"{name}_c5x5", s(5))
        branches.append(c)
    branches.append(b)
    d = _conv(x, n1, 1, f"{name}_d1x1", s(6))
    d = layers.AveragePooling2D(
        2, strides=1, padding="same", data_format=FORMAT, name=f"{name}_dpool"
    )(d)
    branches.append(d)
    return layers.Concatenate(axis=-1, name=f"{name}_concat")(branches)


def build_model(config: dict[str, Any], seed: int | None = None) -> keras.Model:
    """The classifier for `config`; `seed` fixes the initial weights (one ensemble member)."""
    config = normalize_config(config)
    image = keras.Input(IMAGE_SHAPE, name="image", dtype="float32")
    ebv = keras.Input((1,), name="ebv", dtype="float32")
    x = InputScaling(config["scaling"], name="scaling")(image)
    x = _conv(x, config["conv1"], 5, "c1", layer_seed(seed, 0))
    x = layers.AveragePooling2D(2, strides=2, data_format=FORMAT, name="pool1")(x)
    n_blocks = sum(1 for b in config["blocks"] if b != "pool")
    i_block = i_pool = 0
    for b in config["blocks"]:
        if b == "pool":
            i_pool += 1
            x = layers.AveragePooling2D(2, strides=2, data_format=FORMAT, name=f"pool{i_pool + 1}")(
                x
            )
            continue
        i_block += 1
        with_5x5 = not (config["last_without_5x5"] and i_block == n_blocks)
        x = _inception(x, b[0], b[1], f"inc{i_block}", with_5x5, seed, 10 * i_block)
    x = layers.Flatten(data_format=FORMAT, name="flatten")(x)
    x = layers.Concatenate(name="with_ebv")([x, ebv])
    for i, width in enumerate(config["dense"], start=1):
        x = layers.Dense(
            width,
            activation="relu",
            name=f"fc{i}",
            kernel_initializer=keras.initializers.GlorotUniform(seed=layer_seed(seed, 900 + i)),
            bias_initializer=keras.initializers.Constant(0.1),
        )(x)
    logits = layers.Dense(
        config["n_bins"],
        name="logits",
        kernel_initializer=keras.initializers.GlorotUniform(seed=layer_seed(seed, 999)),
        bias_initializer=keras.initializers.Constant(0.1),
    )(x)
    # float32 softmax even under mixed precision: the PDF must sum to 1 to float32 accuracy
    pdf = layers.Activation("softmax", dtype="float32", name="pdf")(logits)
    return keras.Model({"image": image, "ebv": ebv}, pdf, name=f"pasquet2019_{config['name']}")


def logits_model(model: keras.Model) -> keras.Model:
    """The same layers (shared weights) ending at the logits: what training optimises, so the
    cross-entropy is computed from logits on every backend (from_logits=True), never as
    -log(clip(softmax)), whose gradient vanishes for the catastrophic outliers."""
    return keras.Model(model.input, model.get_layer("logits").output, name=f"{model.name}_logits")


def copy_weights(src: keras.Model, dst: keras.Model) -> None:
    """Copy every weighted layer of `dst` from the layer of the same name in `src` (never by
    position: an order that differs, say in an inception block, would go through silently)."""
    for layer in dst.layers:
        if not layer.weights:
            continue
        try:
            other = src.get_layer(layer.name)
        except ValueError:
            raise ValueError(f"no layer {layer.name!r} to copy weights from") from None
        values = other.get_weights()
        for w, v in zip(layer.weights, values, strict=True):
            if tuple(w.shape) != tuple(np.shape(v)):
                raise ValueError(
                    f"layer {layer.name!r}: weight {w.name} has shape {tuple(w.shape)}, "
                    f"the source {tuple(np.shape(v))}"
                )
        layer.set_weights(values)


def trainable_count(model: keras.Model) -> int:
    """Number of trainable scalars (the paper network: 27,596,372)."""
    return int(sum(int(keras.ops.size(w)) for w in model.trainable_weights))
