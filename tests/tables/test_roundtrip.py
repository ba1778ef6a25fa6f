"""Exact round-trips FITS <-> Parquet of images, PDFs, int64 ids, strings, units and metadata."""

from __future__ import annotations

import gzip
import json
import shutil

import fitsio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools import tables as T


@pytest.mark.parametrize("ext", ["parquet", "pq", "fits", "fit", "fits.gz", "fits.bz2"])
def test_roundtrip_each_format(tmp_path, table, metadata, same, ext):
    path = tmp_path / f"t.{ext}"
    T.write_table(table, path, metadata=metadata)
    with T.open_table(path) as reader:
        assert reader.format == "parquet" if "p" in ext.split(".")[0][:1] else "fits"
        assert reader.num_rows == table.num_rows
        assert reader.column_names == table.column_names
        back = reader.read()
        for key, value in metadata.items():
            assert reader.metadata[key] == value
    same(table, back)
    assert back.schema.field("image").type == pa.fixed_shape_tensor(pa.float32(), [64, 64, 5])
    assert back.schema.field("pdf").type == pa.list_(pa.float32(), 180)
    assert back.schema.field("n_frames").type == pa.list_(pa.int16(), 5)
    assert back.schema.field("specObjID").type == pa.int64()
    assert back.schema.field("ra").metadata == {b"unit": b"deg"}
    assert back.schema.field("image").metadata == {b"unit": b"nanomaggy"}


def test_fits_parquet_fits_chain_is_exact(tmp_path, table, metadata, same):
    T.write_table(table, tmp_path / "a.fits", metadata=metadata)
    a = T.read_table(tmp_path / "a.fits")
    T.write_table(a, tmp_path / "b.parquet")
    b = T.read_table(tmp_path / "b.parquet")
    T.write_table(b, tmp_path / "c.fits")
    c = T.read_table(tmp_path / "c.fits")
    same(table, c)
    meta_c = T.open_table(tmp_path / "c.fits").metadata
    assert json.loads(meta_c[T.BIN_EDGES_KEY]) == json.loads(metadata[T.BIN_EDGES_KEY])
    assert meta_c["pz_command"] == metadata["pz_command"]
    assert c.schema.field("ra").metadata == {b"unit": b"deg"}


@pytest.mark.filterwarnings("ignore:.*nanomaggy.*")
def test_fits_image_axes_and_tdim(tmp_path, table):
    """(64, 64, 5) is TDIM '(5,64,64)' (FITS order) and reads back as [y, x, band] elsewhere too."""
    path = tmp_path / "t.fits"
    T.write_table(table, path)
    header = fitsio.read_header(path, 1)
    i = [header[f"TTYPE{k}"] for k in range(1, header["TFIELDS"] + 1)].index("image") + 1
    assert header[f"TDIM{i}"].replace(" ", "") == "(5,64,64)"
    assert header[f"TFORM{i}"] == "20480E"
    assert header[f"TUNIT{i}"] == "nanomaggy"
    from astropy.table import Table

    other = Table.read(path, hdu=1)
    assert other["image"].shape == (table.num_rows, 64, 64, 5)
    assert np.array_equal(np.asarray(other["image"]), T.column_array(table, "image"))
    assert np.array_equal(np.asarray(other["specObjID"]), T.column_array(table, "specObjID"))


def test_fits_metadata_keywords_history_and_case(tmp_path, table, metadata):
    path = tmp_path / "t.fits"
    meta = {**metadata, "lower": "v", "MixedCaseKey": "w", "ORIGIN": "photoz-tools"}
    T.write_table(table, path, metadata=meta)
    header = fitsio.read_header(path, 1)
    history = "".join(str(r["value"]) for r in header.records() if r["name"] == "HISTORY")
    assert "pz_command: pz-predict" in history
    assert "pz_model_hash: sha256:" in history
    assert header["ORIGIN"] == "photoz-tools"
    got = T.open_table(path).metadata
    for key, value in meta.items():
        assert got[key] == value


def test_foreign_fits_header_keywords_become_metadata(tmp_path):
    path = tmp_path / "foreign.fits"
    data = np.zeros(3, dtype=[("objID", "i8"), ("r", "f4")])
    fitsio.write(
        str(path), data, header=[{"name": "TELESCOP", "value": "SDSS 2.5m"}], units=["", "mag"]
    )
    with T.open_table(path) as reader:
        assert reader.metadata["TELESCOP"] == "SDSS 2.5m"
        assert "NAXIS1" not in reader.metadata and "TTYPE1" not in reader.metadata
        assert reader.schema.field("r").metadata == {b"unit": b"mag"}


def test_strings_booleans_float16_and_nulls(tmp_path, same):
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "name": pa.array(["NGC 1068", "", "ümlaut"]),
            "flag": pa.array([True, False, True]),
            "pdf16": T.to_arrow(np.full((3, 4), 0.25, np.float16)),
            "x": pa.array([1.5, None, 3.0], pa.float64()),
            "n": pa.array([1, None, 3], pa.int32()),
        }
    )
    T.write_table(table, tmp_path / "t.parquet")
    same(table, T.read_table(tmp_path / "t.parquet"))
    T.write_table(table, tmp_path / "t.fits")
    back = T.read_table(tmp_path / "t.fits")
    assert back.column("name").to_pylist() == ["NGC 1068", "", "ümlaut"]
    assert back.column("flag").to_pylist() == [True, False, True]
    assert T.column_array(back, "pdf16").dtype == np.float32  # FITS has no float16
    assert np.array_equal(T.column_array(back, "pdf16"), np.full((3, 4), 0.25))
    assert np.isnan(T.column_array(back, "x")[1])
    assert back.column("n").to_pylist() == [1, None, 3]  # TNULL marks the null


def test_uint64_and_extreme_int64(tmp_path):
    table = pa.table(
        {
            "objID": pa.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max], pa.int64()),
            "u": pa.array([0, 1, 2**63, 2**64 - 1], pa.uint64()),
        }
    )
    for ext in ("fits", "parquet"):
        T.write_table(table, tmp_path / f"t.{ext}")
        assert T.read_table(tmp_path / f"t.{ext}").equals(table)


def test_zero_row_tables(tmp_path, table_factory, same):
    empty = table_factory(3).slice(0, 0)
    for ext in ("fits", "parquet", "csv"):
        if ext == "csv":
            empty = empty.select(["specObjID", "ra", "z"])
        T.write_table(empty, tmp_path / f"e.{ext}")
        with T.open_table(tmp_path / f"e.{ext}") as reader:
            assert reader.num_rows == 0
            assert list(reader.iter_batches()) == []
            if ext != "csv":
                same(empty, reader.read())


def test_column_selection_pushed_down(tmp_path, table):
    for ext in ("fits", "parquet"):
        path = tmp_path / f"t.{ext}"
        T.write_table(table, path)
        with T.open_table(path, columns=["pdf", "specObjID"]) as reader:
            assert reader.schema.names == ["pdf", "specObjID"]
            assert "image" in reader.column_names
            batch = next(reader.iter_batches())
            assert batch.schema.names == ["pdf", "specObjID"]
            assert np.array_equal(T.column_array(batch, "pdf"), T.column_array(table, "pdf"))
            one = next(reader.iter_batches(columns=["z"]))
            assert one.schema.names == ["z"]


def test_iter_batches_bounded_and_offsets(tmp_path, table_factory):
    table = table_factory(50)
    for ext in ("fits", "parquet"):
        path = tmp_path / f"t.{ext}"
        T.write_table(table, path)
        with T.open_table(path, batch_rows=16) as reader:
            sizes = [b.num_rows for b in reader.iter_batches()]
            assert sum(sizes) == 50 and max(sizes) <= 16
            offsets = [o for o, _ in reader.iter_batches(batch_rows=20, with_offset=True)]
            assert offsets == [0, 20, 40]


def test_default_batch_is_bounded_in_bytes(tmp_path, table_factory):
    table = table_factory(3)
    T.write_table(table, tmp_path / "t.parquet")
    with T.open_table(tmp_path / "t.parquet") as reader:
        assert reader._default_batch_rows(["image"]) * 64 * 64 * 5 * 4 <= T.DEFAULT_BATCH_BYTES
        assert reader._default_batch_rows(["z"]) == T.DEFAULT_BATCH_ROWS


def test_parquet_row_groups_sized_for_streaming(tmp_path, table_factory, monkeypatch):
    monkeypatch.setattr(T.writing, "ROW_GROUP_BYTES", 20 * 82_000)  # ~20 images a row group
    table = table_factory(50)
    with T.TableWriter(tmp_path / "t.parquet", table.schema) as writer:
        for batch in table.to_batches(max_chunksize=7):  # small batches are gathered
            writer.write(batch)
    meta = pq.ParquetFile(tmp_path / "t.parquet").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == 50 and max(sizes) <= 20 and sizes[0] >= 14


def test_streaming_writer_fits_appends(tmp_path, table_factory, same):
    table = table_factory(30)
    with T.TableWriter(tmp_path / "t.fits", table.schema) as writer:
        for batch in table.to_batches(max_chunksize=8):
            writer.write(batch)
    same(table, T.read_table(tmp_path / "t.fits"))


def test_real_compressed_sdss_frame_is_read_through_bz2(shared_data):
    """A real SDSS frame (.fits.bz2): HDU0 image, HDU2 the sky table: the first table is read."""
    frame = next((shared_data / "sdss-frames").rglob("frame-r-*.fits.bz2"))
    with T.open_table(frame) as reader:
        assert reader.format == "fits"
        assert reader.num_rows == 1
        assert {"ALLSKY", "XINTERP", "YINTERP"} <= set(reader.column_names)
        assert T.column_array(reader.read(), "ALLSKY").ndim == 3


def test_gzip_fits_with_plain_fits_name_is_sniffed(tmp_path, table, same):
    T.write_table(table, tmp_path / "t.fits")
    with open(tmp_path / "t.fits", "rb") as fin, gzip.open(tmp_path / "z.fits", "wb") as fout:
        shutil.copyfileobj(fin, fout)
    same(table, T.read_table(tmp_path / "z.fits"))


def test_to_arrow_and_column_array_shapes_and_zero_copy():
    img = np.arange(2 * 4 * 4 * 5, dtype=np.float32).reshape(2, 4, 4, 5)
    arr = T.to_arrow(img)
    assert isinstance(arr.type, pa.FixedShapeTensorType)
    batch = pa.record_batch(
        [arr, T.to_arrow(img[:, 0, 0, :]), T.to_arrow(np.arange(2))], names=["image", "vec", "i"]
    )
    out = T.column_array(batch, "image")
    assert out.shape == (2, 4, 4, 5) and np.array_equal(out, img)
    assert np.shares_memory(out, T.column_array(batch, "image"))  # zero-copy views of one buffer
    assert T.column_array(batch, "vec").shape == (2, 5)
    sliced = batch.slice(1, 1)
    assert np.array_equal(T.column_array(sliced, "image")[0], img[1])
    assert np.array_equal(T.column_array(sliced, "vec")[0], img[1, 0, 0, :])
    nulls = pa.record_batch([pa.array([1.0, None])], names=["x"])
    assert np.isnan(T.column_array(nulls, "x")[1])


def test_text_formats_roundtrip_scalar_tables(tmp_path):
    table = pa.table(
        {
            "objID": pa.array([1237648720693755918, 2**62 + 3], pa.int64()),
            "ra": pa.array([10.5, 200.25]),
            "class": pa.array(["GALAXY", "QSO"]),
        }
    )
    for ext in ("csv", "ecsv", "vot", "xml"):
        path = tmp_path / f"t.{ext}"
        T.write_table(table, path, metadata={"survey": "SDSS"})
        back = T.read_table(path)
        assert back.column("objID").to_pylist() == table.column("objID").to_pylist(), ext
        assert back.column("ra").to_pylist() == [10.5, 200.25], ext
        assert back.column("class").to_pylist() == ["GALAXY", "QSO"], ext
        if ext == "ecsv":
            assert back.schema.field("ra").metadata == {b"unit": b"deg"}
            assert T.open_table(path).metadata["survey"] == "SDSS"


def test_streaming_csv_writer(tmp_path):
    table = pa.table({"id": pa.array(range(10), pa.int64()), "z": pa.array(np.linspace(0, 1, 10))})
    with T.TableWriter(tmp_path / "t.csv", table.schema) as writer:
        for batch in table.to_batches(max_chunksize=3):
            writer.write(batch)
    text = (tmp_path / "t.csv").read_text().splitlines()
    assert text[0] == "id,z" and len(text) == 11
    assert T.read_table(tmp_path / "t.csv").column("id").to_pylist() == list(range(10))


def test_real_reference_csv_keeps_64bit_ids(shared_data):
    path = shared_data / "reference-predictions" / "dey2022_umap_test_predictions.csv"
    with T.open_table(path) as reader:
        assert reader.format == "csv"
        assert reader.num_rows == 51_791
        ids = T.column_array(reader.read(["specObjID"]), "specObjID")
    assert ids.dtype == np.int64
    first = int(path.read_text().splitlines()[1].split(",")[0])
    assert int(ids[0]) == first
    with pytest.raises(T.TableError, match=r"139 duplicate values in id column 'specObjID'"):
        T.check_unique_ids(ids, "specObjID", str(path))


def test_find_id_column():
    assert T.find_id_column(["ra", "OBJID", "specObjID"]) == "OBJID"
    assert T.find_id_column(["ra", "SpecObjId", "id"]) == "SpecObjId"
    assert T.find_id_column(["ra", "ID"]) == "ID"
    assert T.find_id_column(["ra", "dec"]) is None
    assert T.find_id_column(["objID", "galaxy"], requested="GALAXY") == "galaxy"
    assert T.find_id_column(["objID"], requested="nope") is None


def test_provenance_metadata():
    meta = T.provenance_metadata("pz-score p.fits", ["p.fits", "-"], model_hash="abc")
    assert set(meta) == set(T.PROVENANCE_KEYS)
    assert json.loads(meta["pz_inputs"]) == ["p.fits", "-"]
    assert meta["pz_created"].endswith("Z") and meta["pz_created"][4] == "-"
    assert "pz_model_hash" not in T.provenance_metadata("x", [])


def test_variable_length_lists_from_pandas(tmp_path):
    """pandas writes list<float> PDFs: column_array reshapes equal lengths; check_cell explains."""
    table = pa.table({"pdf": pa.array([[0.5, 0.5], [0.25, 0.75]], pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "p.parquet")
    back = T.read_table(tmp_path / "p.parquet")
    assert T.column_array(back, "pdf").shape == (2, 2)
    with pytest.raises(T.TableError, match="holds variable-length lists of float, not fixed-size"):
        T.check_cell(T.open_table(tmp_path / "p.parquet"), "pdf", (None,), "float32")
    ragged = pa.table({"pdf": pa.array([[1.0], [0.5, 0.5]])})
    with pytest.raises(T.TableError, match="lists of differing lengths"):
        T.column_array(ragged, "pdf")


def test_metadata_values_are_strings(tmp_path):
    T.write_table(pa.table({"a": [1]}), tmp_path / "t.fits", metadata={"nbins": 180, "f": 0.5})
    assert T.open_table(tmp_path / "t.fits").metadata["nbins"] == "180"
    T.write_table(pa.table({"a": [1]}), tmp_path / "t.parquet", metadata={"nbins": 180})
    assert T.open_table(tmp_path / "t.parquet").metadata["nbins"] == "180"


def test_zero_row_arrays_and_vectors_in_ecsv_votable(tmp_path):
    empty = T.to_arrow(np.zeros((0, 64, 64, 5), np.float32))
    assert empty.type == pa.fixed_shape_tensor(pa.float32(), [64, 64, 5]) and len(empty) == 0
    batch = pa.record_batch([empty], names=["image"])
    assert T.column_array(batch, "image").shape == (0, 64, 64, 5)
    pdf = np.array([[0.5, 0.5], [0.25, 0.75]], np.float32)
    table = pa.table({"id": pa.array([1, 2]), "pdf": T.to_arrow(pdf)})
    for ext in ("ecsv", "vot"):
        T.write_table(table, tmp_path / f"t.{ext}")
        assert np.array_equal(T.column_array(T.read_table(tmp_path / f"t.{ext}"), "pdf"), pdf)


def test_any_metadata_dict_roundtrips_through_fits(tmp_path):
    """Keys and values a FITS keyword cannot hold exactly travel in the PZMETA JSON keyword."""
    meta = {
        "k" * 60: "v" * 300,  # too long for HIERARCH + CONTINUE
        "x y": "1",
        "with=eq": "2",
        "naxis": "3",  # would clash with a structural keyword
        "ümlaut": "ü",
        "command": "pz-score 'a b.fits'\n",
        "trail": "x  ",
        "A": "4",
        "a": "5",  # differs from 'A' only in case
        "empty": "",
        "pz_inputs": json.dumps(["Ünïcode.fits"]),
    }
    T.write_table(pa.table({"a": [1]}), tmp_path / "t.fits", metadata=meta)
    assert T.open_table(tmp_path / "t.fits").metadata == meta


def test_null_pdf_cells_keep_their_rows(tmp_path):
    """pz-predict writes null pdf cells for flagged rows: they read back as NaN rows, in place."""
    pdf = np.tile(np.arange(180, dtype=np.float32), (4, 1))
    arr = pa.array([pdf[0], None, pdf[2], None], type=T.to_arrow(pdf).type)
    batch = pa.record_batch([arr, pa.array([1, 2, 3, 4])], ["pdf", "id"])
    for data in (batch, batch.slice(1)):
        out = T.column_array(data, "pdf")
        assert out.shape == (len(data), 180)
        expect_null = np.asarray(data.column(0).is_null())
        assert np.isnan(out[expect_null]).all()
        assert (out[~expect_null] == pdf[0]).all()
    path = tmp_path / "nulls.parquet"
    T.write_table(pa.Table.from_batches([batch]), path)
    back = T.column_array(T.read_table(path), "pdf")
    assert np.isnan(back[[1, 3]]).all() and (back[[0, 2]] == pdf[0]).all()
