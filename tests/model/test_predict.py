"""pz-predict with the session's tiny bundle: columns, PDFs, metadata, bad rows, options."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools import tables
from photoz_tools.pdf import FLAG_BAD_INPUT, Bins

pytest.importorskip("keras")


def _read(stdout: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(stdout))


def test_predict_writes_summaries_pdf_provenance_and_qp(
    cli, tiny_bundle, catalog, model_env, tmp_path
):
    try:
        import qp
    except ImportError:  # the optional extra: the rest of the test still runs
        qp = None
    qpf = tmp_path / "pdfs.hdf5"
    r = cli(
        "pz-predict",
        "-m",
        str(tiny_bundle),
        str(catalog),
        *(["--qp", str(qpf)] if qp else []),
        env=model_env,
    )
    assert r.returncode == 0, r.stderr.decode()
    t = _read(r.stdout)  # qp's own chatter must not reach stdout
    names = t.column_names
    assert names[:3] == ["objID", "z", "ebv"] and "image" not in names
    for c in ("zphot", "zphot_err", "zmode", "z_lo68", "z_hi68", "width68", "pz_flags", "pdf"):
        assert c in names
    assert t.num_rows == 40
    src = tables.read_table(catalog)
    np.testing.assert_array_equal(t["objID"].to_numpy(), src["objID"].to_numpy())  # order kept
    p = tables.column_array(t, "pdf")
    assert p.shape == (40, 180) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    md = t.schema.metadata
    bins = Bins.from_json(md[tables.BIN_EDGES_KEY.encode()])
    assert bins == Bins.default()
    manifest_hash = (
        __import__("hashlib").sha256((tiny_bundle / "manifest.json").read_bytes()).hexdigest()
    )
    assert md[b"pz_model_hash"].decode() == manifest_hash
    zp = t["zphot"].to_numpy()
    np.testing.assert_allclose(zp, p.astype(np.float64) @ bins.midpoints, rtol=1e-4)
    assert b"predicted 40 rows" in r.stderr
    if qp is not None:
        _check_qp(qp, qpf, t)


def _check_qp(qp, qpf, t):
    """The --qp file read back with qp itself: same bins, PDFs, ids and means."""
    ens = qp.read(str(qpf))
    assert ens.npdf == t.num_rows
    edges = np.asarray(ens.metadata["bins"]).reshape(-1)
    np.testing.assert_allclose(edges, Bins.default().edges)
    density = np.asarray(ens.objdata["pdfs"])  # qp keeps densities: probability / bin width
    np.testing.assert_allclose(
        density * np.diff(edges), tables.column_array(t, "pdf"), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_array_equal(ens.ancil["objID"], t["objID"].to_numpy())
    np.testing.assert_array_equal(ens.ancil["pz_flags"], t["pz_flags"].to_numpy())
    np.testing.assert_allclose(ens.mean().reshape(-1), t["zphot"].to_numpy(), atol=1e-4)


def test_predict_arrays_matches_the_command(cli, tiny_bundle, catalog, model_env, tmp_path):
    from photoz_tools.model.predict import predict_arrays

    out = tmp_path / "p.parquet"
    r = cli(
        "pz-predict",
        "-m",
        str(tiny_bundle),
        str(catalog),
        "-o",
        str(out),
        "-q",
        "--batch-size",
        "16",
        env=model_env,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stderr == b""
    src = tables.read_table(catalog)
    p = predict_arrays(
        tiny_bundle,
        tables.column_array(src, "image"),
        tables.column_array(src, "ebv"),
        batch_size=7,
    )
    np.testing.assert_allclose(p, tables.column_array(tables.read_table(out), "pdf"), atol=2e-6)


def test_bad_rows_get_nulls_and_a_flag(cli, tiny_bundle, model_env, tmp_path, make_dataset):
    path = make_dataset(tmp_path / "in.parquet", 12, seed=4)
    t = tables.read_table(path)
    images = tables.column_array(t, "image").copy()
    images[3, 10, 10, 2] = np.nan
    ebv = tables.column_array(t, "ebv").copy()
    ebv[7] = np.nan
    ebv[9] = -0.05  # no dust map gives a negative E(B-V)
    images[10] = 3e38  # so large the network overflows: a flag, never a NaN PDF
    t = t.set_column(t.column_names.index("image"), "image", tables.to_arrow(images))
    t = t.set_column(t.column_names.index("ebv"), "ebv", pa.array(ebv, mask=np.isnan(ebv)))
    tables.write_table(t, path)
    r = cli("pz-predict", "-m", str(tiny_bundle), str(path), "--pdf", "float16", env=model_env)
    assert r.returncode == 0, r.stderr.decode()
    out = _read(r.stdout)
    assert out.num_rows == 12
    assert out["zphot"].null_count == 3 and out["pdf"].null_count == 3
    assert not out["zphot"][3].is_valid and not out["pdf"][7].is_valid
    flags = out["pz_flags"].to_numpy()
    assert (flags[[3, 7, 9]] == FLAG_BAD_INPUT).all()
    assert not (flags[[0, 1, 2, 4, 10]] & FLAG_BAD_INPUT).any()
    assert out.schema.field("pdf").type.value_type == pa.float16()
    # the huge row went through the tiny network without overflowing: a proper PDF
    pdfs = tables.column_array(out, "pdf").astype(np.float64)
    good = [0, 1, 2, 4, 5, 6, 8, 10, 11]
    assert np.isfinite(pdfs[good]).all() and np.allclose(pdfs[good].sum(axis=1), 1, atol=2e-2)
    assert b"3 of 12 rows" in r.stderr


def test_a_pdf_the_network_overflowed_becomes_a_flagged_null():
    from photoz_tools.model.predict import overflowed

    p = np.full((3, 4), 0.25, np.float32)
    p[1, 2] = np.nan
    bad, q = overflowed(p, np.array([False, False, True]))
    assert bad.tolist() == [False, True, True] and np.isfinite(q).all()
    assert np.array_equal(q[0], p[0])


def test_keep_pdf_none_stdin_and_fits_out(cli, tiny_bundle, catalog, model_env, tmp_path):
    r = cli(
        "pz-predict",
        "-m",
        str(tiny_bundle),
        "--keep",
        "objID",
        "--pdf",
        "none",
        "--format",
        "fits",
        input=catalog.read_bytes(),
        env=model_env,
    )
    assert r.returncode == 0, r.stderr.decode()
    out = tmp_path / "o.fits"
    out.write_bytes(r.stdout)
    t = tables.read_table(out)
    assert t.column_names == [
        "objID",
        "zphot",
        "zphot_err",
        "zmode",
        "z_lo68",
        "z_hi68",
        "width68",
        "pz_flags",
    ]
    assert t.num_rows == 40


def test_tta_averages_the_eight_symmetries(tiny_bundle, catalog):
    from photoz_tools.model import bundle
    from photoz_tools.model.data import transform
    from photoz_tools.model.predict import predict_arrays

    b = bundle.load_bundle(tiny_bundle)
    src = tables.read_table(catalog)
    im, ebv = tables.column_array(src, "image")[:5], tables.column_array(src, "ebv")[:5]
    want = np.mean(
        [predict_arrays(b, np.ascontiguousarray(transform(im, k)), ebv, 5) for k in range(8)],
        axis=0,
    )
    np.testing.assert_allclose(predict_arrays(b, im, ebv, 5, tta=True), want, atol=1e-6)
    # the 8 transforms are distinct and invertible
    x = np.arange(2 * 4 * 4 * 1, dtype=np.float32).reshape(2, 4, 4, 1)
    assert len({transform(x, k).tobytes() for k in range(8)}) == 8


def test_table_without_images(cli, tiny_bundle, tmp_path, model_env):
    path = tmp_path / "cat.parquet"
    tables.write_table(pa.table({"objID": [1, 2], "ebv": [0.1, 0.2]}), path)
    r = cli("pz-predict", "-m", str(tiny_bundle), str(path), env=model_env)
    assert r.returncode == 1
    assert b"no image column; make cutouts with pz-cutout" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_no_bundle_says_how_to_get_one(cli, catalog, model_env):
    r = cli("pz-predict", str(catalog), env=model_env)
    assert r.returncode == 1
    line = r.stderr.decode().strip()
    assert len(line.splitlines()) == 1 and "pz-train" in line and "-m BUNDLE" in line


def test_default_bundle_pz_model_and_set_default(cli, tiny_bundle, catalog, tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "PZ_MODEL": ""}
    r = cli("pz-predict", "--set-default", str(tiny_bundle), env=env)
    assert r.returncode == 0, r.stderr.decode()
    reg = json.loads((tmp_path / "xdg" / "photoz-tools" / "default-model.json").read_text())
    assert reg["path"] == str(tiny_bundle.resolve())
    r = cli("pz-predict", str(catalog), "--pdf", "none", env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert _read(r.stdout).num_rows == 40
    # $PZ_MODEL wins over the registered default
    r = cli("pz-predict", str(catalog), env={**env, "PZ_MODEL": str(tmp_path / "nowhere")})
    assert r.returncode == 1 and b"nowhere: no such model bundle" in r.stderr


def test_altered_bundle_is_refused(cli, tiny_bundle, catalog, model_env, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_bundle, bad)
    member = bad / "member_1.keras"
    data = bytearray(member.read_bytes())
    data[-100] ^= 0xFF
    member.write_bytes(bytes(data))
    r = cli("pz-predict", "-m", str(bad), str(catalog), env=model_env)
    assert r.returncode == 1
    assert b"does not match its sha256" in r.stderr and b"Traceback" not in r.stderr


def test_bundle_for_other_bins_or_inputs_is_refused(tiny_bundle, tmp_path):
    from photoz_tools.model import bundle

    with pytest.raises(bundle.BundleError, match="predicts over"):
        bundle.load_bundle(tiny_bundle, bins=Bins.linear(0, 1, 180), load_members=False)
    other = tmp_path / "other"
    shutil.copytree(tiny_bundle, other)
    m = json.loads((other / "manifest.json").read_text())
    m["inputs"]["image"]["shape"] = [48, 48, 5]
    (other / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(bundle.BundleError, match="made for inputs"):
        bundle.load_bundle(other, load_members=False)


def test_manifest_records_the_training(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    assert m["architecture"]["name"] == "tiny" and m["scaling"] == "signed_sqrt"
    from photoz_tools.model.train import member_seed

    assert len(m["members"]) == 2 and m["seeds"] == [member_seed(3, 0), member_seed(3, 1)]
    assert [mm["member"] for mm in m["members"]] == [0, 1]
    # trained from an unshuffled table: its shuffled copy is gone, nothing hidden is left
    assert sorted(f.name for f in tiny_bundle.iterdir()) == [
        "manifest.json",
        "member_0.keras",
        "member_1.keras",
    ]
    assert {mm["output"] for mm in m["members"]} == {"probabilities"}
    assert m["recipe"]["precision"] == "float32" and "from the logits" in m["recipe"]["loss"]
    assert m["recipe"]["batch_size"] == 32 and m["recipe"]["fold"] == 0
    assert m["data"]["held_out_test_rows"] == 120 and len(m["data"]["fingerprint"]) == 64
    for member in m["members"]:
        assert {"loss", "sigma_mad", "bias", "eta", "crps", "pit_ks"} <= set(member["validation"])
        assert len(member["sha256"]) == 64
    assert m["versions"]["keras"]
