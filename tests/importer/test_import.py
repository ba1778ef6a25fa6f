"""pz-import against a genuine TF1 checkpoint in the authors' layout (tests/importer/conftest.py
builds their network under tensorflow.compat.v1 from the published facts, independently of
photoz_tools' model code): the imported bundle's PDFs must be the TF1 graph's softmax."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("tensorflow")

from photoz_tools import tables  # noqa: E402
from photoz_tools.errors import PzError  # noqa: E402
from photoz_tools.pdf import Bins  # noqa: E402

DATA = "-120000.data-00000-of-00001"
MAX_DP = 1e-5  # oneDNN's reduction order differs between CPU kinds


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _import(src: Path, out: Path) -> Path:
    from photoz_tools.model import tf1_checkpoint

    return tf1_checkpoint.import_checkpoint(src, out)


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_the_example_pipeline_gives_the_tf1_softmax(cli, tmp_path, authors_checkpoint, tf1ref):
    """The issue's run of their test.py: pz-import, then `pz-pack data_example.npz`, pz-predict
    and pz-score, all as commands; PDFs equal to the TF1 graph's, zphot on bin midpoints."""
    bundle = tmp_path / "authors"
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "PZ_MODEL": ""}
    r = cli("pz-import", str(authors_checkpoint), "-o", str(bundle), "--default", env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert "registered as the default bundle" in r.stderr.decode()
    assert r.stderr.decode().count("\n") <= 3, r.stderr.decode()  # no TensorFlow chatter

    manifest = json.loads((bundle / "manifest.json").read_text())
    src = manifest["source"]
    assert src["step"] == 120000
    assert src["data_sha256"] == _sha256(authors_checkpoint / DATA)
    assert src["prelu_key"] == "prelu_1"
    assert manifest["scaling"] == "none"
    assert Bins.from_json(json.dumps(manifest["bins"])) == Bins.default()
    assert set(manifest["inputs"]) == {"image", "ebv"}
    assert sorted(os.listdir(bundle)) == ["manifest.json", "member_0.keras"]

    images, ebv = tf1ref.inputs(12, seed=5)
    z = np.linspace(0.02, 0.3, len(images)).reshape(-1, 1).astype(np.float32)
    np.savez(tmp_path / "data_example.npz", data=images, z=z, ebv=ebv)
    ds = tmp_path / "ex.parquet"
    r = cli("pz-pack", str(tmp_path / "data_example.npz"), "--keep-order", "-o", str(ds), "-q")
    assert r.returncode == 0, r.stderr.decode()
    r = cli("pz-predict", str(ds), "-q", env=env)  # the default bundle: no -m
    assert r.returncode == 0, r.stderr.decode()
    pred = pq.read_table(io.BytesIO(r.stdout))
    np.testing.assert_allclose(pred.column("z").to_numpy(), z[:, 0])  # the order is kept

    want = tf1ref.softmax(authors_checkpoint, images, ebv)
    got = tables.column_array(pred, "pdf")
    assert np.abs(got - want).max() < MAX_DP
    bins = Bins.default()
    zphot = pred.column("zphot").to_numpy()
    np.testing.assert_allclose(zphot, got.astype(np.float64) @ bins.midpoints, atol=2e-6)
    # their test.py's left edges would put every zphot half a bin (0.0011) lower
    left = want.astype(np.float64) @ bins.edges[:-1]
    np.testing.assert_allclose(zphot - left, 0.2 / 180, atol=2e-6)

    r = cli("pz-score", "--truth", "z", input=r.stdout)
    assert r.returncode == 0, r.stderr.decode()
    assert "σ_MAD" in r.stdout.decode() and "| 12 |" in r.stdout.decode()


def test_old_prelu_spelling_and_the_zip(tmp_path, authors_checkpoint_old, tf1ref):
    """TensorFlow < 1.9's `.../prelu` keys, and the release as a zip of `pretrained_model/`."""
    from photoz_tools.model.predict import predict_arrays

    zpath = tmp_path / "pretrained_model.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(authors_checkpoint_old.iterdir()):
            zf.write(f, f"pretrained_model/{f.name}")
    bundle = _import(zpath, tmp_path / "authors")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["source"]["prelu_key"] == "prelu"
    assert manifest["source"]["data_sha256"] == _sha256(authors_checkpoint_old / DATA)
    assert _listing(tmp_path) == ["authors", "pretrained_model.zip"]  # nothing extracted here

    images, ebv = tf1ref.inputs(6, seed=9)
    got = predict_arrays(bundle, images, ebv, batch_size=6)
    want = tf1ref.softmax(authors_checkpoint_old, images, ebv)
    assert np.abs(got - want).max() < MAX_DP


def _partial_copy(src: Path, dst: Path, data_bytes: int | None = None) -> Path:
    """A copy of the checkpoint folder (hard links where the file is unchanged)."""
    dst.mkdir()
    for f in src.iterdir():
        if f.name == DATA and data_bytes is not None:
            with open(f, "rb") as a, open(dst / f.name, "wb") as b:
                b.write(a.read(data_bytes))
        else:
            os.link(f, dst / f.name)
    return dst


def _foreign_checkpoint(folder: Path, shapes: dict[str, list[int]]) -> Path:
    """A small genuine TF1 checkpoint with the given variables (another network)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    folder.mkdir()
    graph = tf.Graph()
    with graph.as_default():
        for name, shape in shapes.items():
            v1.get_variable(name, shape, initializer=v1.zeros_initializer())
        saver = v1.train.Saver(save_relative_paths=True)
        init = v1.global_variables_initializer()
    with v1.Session(graph=graph) as sess:
        sess.run(init)
        saver.save(sess, str(folder) + os.sep, global_step=120000)
    return folder


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing data file", f"{DATA} is missing"),
        ("truncated data file", "truncated"),
        ("truncated index", "-120000.index: not a readable TensorFlow checkpoint index"),
        ("zip without a checkpoint", "no TensorFlow checkpoint in it"),
        ("other shape", "variable conv0/weights has shape [5, 5, 3, 64]"),
        ("other name", "variable conv9/weights [3, 3, 5, 8] is not in the authors' network"),
        ("empty folder", "no TensorFlow checkpoint in it"),
    ],
)
def test_refusals_leave_nothing(tmp_path, authors_checkpoint, case, expect):
    """Each refusal is one line naming the file or variable, and nothing is left at or beside -o
    (the checks all run before anything is written)."""
    src = tmp_path / "src"
    if case == "missing data file":
        _partial_copy(authors_checkpoint, src)
        (src / DATA).unlink()
    elif case == "truncated data file":
        _partial_copy(
            authors_checkpoint, src, data_bytes=(authors_checkpoint / DATA).stat().st_size - 4
        )
    elif case == "truncated index":
        _partial_copy(authors_checkpoint, src)
        idx = src / "-120000.index"
        data = idx.read_bytes()
        idx.unlink()
        idx.write_bytes(data[: len(data) // 2])
    elif case == "zip without a checkpoint":
        src = tmp_path / "src.zip"
        with zipfile.ZipFile(src, "w") as zf:
            zf.writestr("pretrained_model/README.md", "weights elsewhere")
    elif case == "other shape":
        _foreign_checkpoint(src, {"conv0/weights": [5, 5, 3, 64]})
    elif case == "other name":
        _foreign_checkpoint(src, {"conv9/weights": [3, 3, 5, 8]})
    elif case == "empty folder":
        src.mkdir()
    out = tmp_path / "out" / "authors"
    out.parent.mkdir()
    with pytest.raises(PzError) as err:
        _import(src, out)
    message = str(err.value)
    assert expect in message and "\n" not in message, message
    assert str(src) in message
    assert os.listdir(out.parent) == []


def test_command_refusal_is_one_line_and_existing_output_is_kept(cli, tmp_path):
    """The command's answer: exit 1, one stderr line; an existing -o is never replaced
    without --force."""
    out = tmp_path / "authors"
    r = cli("pz-import", str(tmp_path / "nowhere"), "-o", str(out))
    assert r.returncode == 1
    assert r.stderr.decode().strip().count("\n") == 0
    assert "nowhere: no such file or folder" in r.stderr.decode()
    assert os.listdir(tmp_path) == []
    out.mkdir()
    (out / "keep").write_text("x")
    src = tmp_path / "ck"
    src.mkdir()
    (src / "-1.index").write_bytes(b"x")
    (src / "-1.data-00000-of-00001").write_bytes(b"x")
    r = cli("pz-import", str(src), "-o", str(out))
    assert r.returncode == 1 and "already exists" in r.stderr.decode()
    assert os.listdir(out) == ["keep"]
    r = cli("pz-import", str(src))
    assert r.returncode == 2 and "-o BUNDLE is required" in r.stderr.decode()
    shutil.rmtree(out)
