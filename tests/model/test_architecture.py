"""The network: the paper's exact drawing and parameter count, the configs, the input scaling."""

from __future__ import annotations

import numpy as np
import pytest

from photoz_tools.errors import PzUsageError

keras = pytest.importorskip("keras")

from photoz_tools.model import architecture  # noqa: E402

# (name, class) of every layer of the released network, in drawing order
PAPER_ORDER = [
    ("image", "InputLayer"),
    ("scaling", "InputScaling"),
    ("c1", "Conv2D"),
    ("c1_prelu", "PReLU"),
    ("pool1", "AveragePooling2D"),
]
for _i, _with5 in ((1, True), (2, True), (3, True), (4, True), (5, False)):
    _names = ["a1x1", "b1x1", "b3x3"] + (["c1x1", "c5x5"] if _with5 else []) + ["d1x1"]
    _block = []
    for _n in _names:
        _block += [(f"inc{_i}_{_n}", "Conv2D"), (f"inc{_i}_{_n}_prelu", "PReLU")]
    _block += [(f"inc{_i}_dpool", "AveragePooling2D"), (f"inc{_i}_concat", "Concatenate")]
    PAPER_ORDER += _block
    if _i in (2, 4):
        PAPER_ORDER.append((f"pool{_i // 2 + 1}", "AveragePooling2D"))
PAPER_ORDER += [
    ("flatten", "Flatten"),
    ("ebv", "InputLayer"),
    ("with_ebv", "Concatenate"),
    ("fc1", "Dense"),
    ("fc2", "Dense"),
    ("logits", "Dense"),
    ("pdf", "Activation"),
]


@pytest.fixture(scope="module")
def paper():
    return architecture.build_model(architecture.load_config("paper"), seed=0)


def test_paper_has_the_released_parameter_count(paper):
    assert architecture.trainable_count(paper) == 27_596_372


def test_paper_layers_in_drawing_order(paper):
    got = [(layer.name, type(layer).__name__) for layer in paper.layers]
    # the functional model lists layers topologically; compare as sets of (name, class) and
    # check the order of every block's defining layers
    assert sorted(got) == sorted(PAPER_ORDER)
    names = [n for n, _ in got]
    seq = [
        "c1",
        "pool1",
        "inc1_concat",
        "inc2_concat",
        "pool2",
        "inc3_concat",
        "inc4_concat",
        "pool3",
        "inc5_concat",
        "flatten",
        "with_ebv",
        "fc1",
        "fc2",
        "logits",
        "pdf",
    ]
    assert [names.index(s) for s in seq] == sorted(names.index(s) for s in seq)


def test_paper_shapes_and_details(paper):
    shape = {layer.name: tuple(layer.output.shape[1:]) for layer in paper.layers}
    assert shape["inc1_concat"] == (32, 32, 240)
    assert shape["inc2_concat"] == (32, 32, 340)
    assert shape["inc4_concat"] == (16, 16, 476)
    assert shape["inc5_concat"] == (8, 8, 348)
    assert shape["flatten"] == (22272,)
    assert shape["pdf"] == (180,)
    conv = paper.get_layer("inc3_b3x3")
    assert conv.strides == (1, 1) and conv.padding == "same"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv.bias), 0.1)
    prelu = paper.get_layer("inc3_b3x3_prelu")
    assert tuple(prelu.alpha.shape) == (1, 1, 128)  # per channel
    assert not any(type(la).__name__ in ("BatchNormalization", "Dropout") for la in paper.layers)
    assert paper.get_layer("scaling").mode == "none"


def test_configs_scale_the_network():
    counts = {
        n: architecture.trainable_count(architecture.build_model(architecture.load_config(n)))
        for n in ("small", "tiny")
    }
    assert 1e6 < counts["small"] < 3e6
    assert counts["tiny"] < 3e5


def test_bad_config_is_a_usage_error(tmp_path):
    with pytest.raises(PzUsageError, match="nope"):
        architecture.load_config("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("blocks = [[1, 2, 3]]\n")
    with pytest.raises(PzUsageError, match="block"):
        architecture.load_config(bad)
    bad.write_text('scaling = "log"\n')
    with pytest.raises(PzUsageError, match="scaling"):
        architecture.load_config(bad)


def test_signed_sqrt_scaling():
    layer = architecture.InputScaling("signed_sqrt")
    x = np.array([[-4.0, 0.0, 9.0]], dtype=np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), [[-2.0, 0.0, 3.0]])
    assert architecture.InputScaling.from_config(layer.get_config()).mode == "signed_sqrt"


def test_same_seed_same_initial_weights():
    cfg = architecture.load_config("tiny")
    a = architecture.build_model(cfg, seed=5).get_weights()
    b = architecture.build_model(cfg, seed=5).get_weights()
    c = architecture.build_model(cfg, seed=6).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
