"""pz-train options, checked by what they do: a custom TOML --arch, --scaling, --no-augment,
--z-col, --ebv-col, --default, --restart, --force and $PZ_TRAIN_BUFFER_MB.

One shared tiny run (the `trained` fixture) carries most options at once; --force, --restart
and the buffer share a second one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import dihedral, fed_images

pytest.importorskip("keras")

TINY = ["--steps", "1", "--batch-size", "16", "--val-size", "4", "--no-xla", "--seed", "2"]


def _model(bundle):
    from photoz_tools.model import backend

    keras = backend.import_keras()
    import photoz_tools.model.architecture  # noqa: F401  (registers InputScaling)

    return keras.saving.load_model(bundle / "member_0.keras", safe_mode=True)


def test_custom_toml_arch_builds_the_network_it_draws(trained):
    model = _model(trained["bundle"])
    convs = [la for la in model.layers if type(la).__name__ == "Conv2D"]
    dense = [la.units for la in model.layers if type(la).__name__ == "Dense"]
    # conv1 = 4 maps of 5x5 on 5 bands
    assert convs[0].kernel.shape == (5, 5, 5, 4)
    # block [4, 4] (1x1, 1x1->3x3, 1x1->5x5, 1x1->pool), then [4, 6] without the 5x5 branch
    assert sorted(tuple(c.kernel.shape[:2]) for c in convs[1:]).count((5, 5)) == 1
    assert {c.kernel.shape[-1] for c in convs[1:]} == {4, 6}
    assert dense == [16, 180]  # dense = [16], then the 180 classes
    manifest = json.loads((trained["bundle"] / "manifest.json").read_text())
    assert manifest["architecture"]["name"] == "optiontest"


def test_scaling_signed_sqrt_is_in_the_saved_network(trained):
    model = _model(trained["bundle"])
    scaling = [la for la in model.layers if type(la).__name__ == "InputScaling"]
    assert len(scaling) == 1
    x = np.array([[-4.0, 0.0, 9.0, 0.25]], dtype=np.float32)
    got = np.asarray(scaling[0](x))
    np.testing.assert_allclose(got, [[-2.0, 0.0, 3.0, 0.5]], rtol=1e-6)
    # the TOML has no scaling key (default 'none'): the option won
    assert json.loads((trained["bundle"] / "manifest.json").read_text())["scaling"] == "signed_sqrt"


def _kinds(fed, images):
    """For each fed image: 0 if it is a stored image as it is, k > 0 if it is only the k-th
    rotation/flip of one (numpy's rot90/flip), -1 if neither."""
    views = {}
    for img in images:
        for k, v in enumerate(dihedral(img)):
            views.setdefault(np.ascontiguousarray(v).tobytes(), k)
    return [views.get(np.ascontiguousarray(x).tobytes(), -1) for batch in fed for x in batch]


def test_no_augment_feeds_the_stored_images_as_they_are(trained):
    kinds = _kinds(trained["fed"], trained["data"]["image"])
    assert len(kinds) == 2 * 16  # 2 steps of 16
    assert set(kinds) == {0}
    recipe = json.loads((trained["bundle"] / "manifest.json").read_text())["recipe"]
    assert recipe["augment"] is False and recipe["augmentation"] == "none"


def test_z_col_and_ebv_col_are_the_columns_trained_on(trained):
    # the dataset's own `z` (7.0, outside the bins) and `ebv` (NaN) would have been refused
    data = json.loads((trained["bundle"] / "manifest.json").read_text())["data"]
    assert data["z_column"] == "zz" and data["ebv_column"] == "EBV"
    assert data["train_rows"] + data["val_rows"] == 48 and data["dropped_out_of_range"] == 0


def test_default_registers_the_bundle_for_pz_predict(trained, pz, tmp_path):
    assert b"registered as the default bundle" in trained["result"].stderr
    cat = tmp_path / "cat.parquet"
    g = trained["data"]
    from .conftest import write_table

    write_table(cat, {"objID": g["objID"][:6], "ebv": g["ebv"][:6], "image": g["image"][:6]})
    env = {"XDG_DATA_HOME": str(trained["xdg"]), "PZ_MODEL": ""}
    implicit = pz("pz-predict", str(cat), "-o", str(tmp_path / "a.parquet"), "-q", env=env)
    assert implicit.returncode == 0, implicit.stderr.decode()
    explicit = pz(
        "pz-predict", "-m", str(trained["bundle"]), str(cat), "-o", str(tmp_path / "b.parquet")
    )
    assert explicit.returncode == 0, explicit.stderr.decode()
    import pyarrow.parquet as pq

    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.column("zphot").to_pylist() == b.column("zphot").to_pylist()
    # with a fresh registry, no default: pz-predict says so instead of predicting
    none = pz("pz-predict", str(cat), "-o", str(tmp_path / "c.parquet"), "-q")
    assert none.returncode != 0 and not (tmp_path / "c.parquet").exists()


def test_force_restart_and_train_buffer(trained, pz, tmp_path):
    dataset = trained["dataset"]
    cols = ["--z-col", "zz", "--ebv-col", "EBV", "--arch", "tiny", "--scaling", "none"]
    out = tmp_path / "m"
    out.mkdir()
    (out / "old.txt").write_text("an earlier bundle")
    # an existing folder is kept without --force
    r = pz("pz-train", str(dataset), "-o", str(out), *cols, *TINY)
    assert r.returncode == 1 and b"--force" in r.stderr
    assert (out / "old.txt").is_file()
    # a work folder of another interrupted run is kept without --restart
    work = tmp_path / "m.partial"
    work.mkdir()
    (work / "run.json").write_text(json.dumps({"key": "another run"}))
    (work / "marker").write_text("x")
    r = pz("pz-train", str(dataset), "-o", str(out), "--force", *cols, *TINY)
    assert r.returncode == 1 and b"--restart" in r.stderr
    assert (work / "marker").is_file() and (out / "old.txt").is_file()
    # $PZ_TRAIN_BUFFER_MB is read: a bad value is named
    r = pz(
        "pz-train",
        str(dataset),
        "-o",
        str(out),
        "--force",
        "--restart",
        *cols,
        *TINY,
        "-q",
        env={"PZ_TRAIN_BUFFER_MB": "lots"},
    )
    assert r.returncode == 1 and b"PZ_TRAIN_BUFFER_MB" in r.stderr, r.stderr.decode()
    assert r.stderr.decode().count("\n") == 1 and b"Traceback" not in r.stderr
    # --force --restart with a tiny buffer (0.1 MB: the floor of 4 batches) trains
    with fed_images() as fed:
        r = pz(
            "pz-train",
            str(dataset),
            "-o",
            str(out),
            "--force",
            "--restart",
            *cols,
            *TINY,
            "--batch-size",
            "4",
            "--steps",
            "4",
            env={"PZ_TRAIN_BUFFER_MB": "0.1"},  # 16 rows (4 batches) of the 44: streamed
        )
    assert r.returncode == 0, r.stderr.decode()
    # augmentation on (the default): rotations and flips of the stored images, by numpy's terms
    kinds = _kinds(fed, trained["data"]["image"])
    assert -1 not in kinds and len(set(kinds) - {0}) >= 3
    assert not (out / "old.txt").exists() and (out / "manifest.json").is_file()
    assert not work.exists()
    m = json.loads((out / "manifest.json").read_text())
    assert m["members"][0]["steps"] == 4 and m["architecture"]["name"] == "tiny"
    # --scaling none beats the tiny architecture's own signed_sqrt: the network sees x as it is
    assert m["scaling"] == "none"
    (layer,) = [la for la in _model(out).layers if type(la).__name__ == "InputScaling"]
    x = np.array([[-4.0, 0.0, 9.0]], dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
