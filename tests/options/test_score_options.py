"""pz-score -q: the same results, with nothing on stderr (no logs, no warnings)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def test_quiet_silences_logs_and_warnings_only(pz, tmp_path):
    rng = np.random.default_rng(0)
    z = rng.uniform(0.01, 0.4, 60)
    zphot = z + rng.normal(0, 0.01, 60)
    z[3] = np.nan  # dropped with a warning (--drop-nan)
    zphot = pa.array(zphot, mask=np.arange(60) == 7)  # a null photo-z: left out with a count
    pq.write_table(
        pa.table({"objID": np.arange(60), "z": z, "zphot": zphot}), tmp_path / "p.parquet"
    )
    args = [str(tmp_path / "p.parquet"), "--drop-nan"]
    loud = pz("pz-score", *args, "-o", str(tmp_path / "a.csv"))
    quiet = pz("pz-score", *args, "-q", "-o", str(tmp_path / "b.csv"))
    assert loud.returncode == 0 and quiet.returncode == 0, loud.stderr.decode()
    text = loud.stderr.decode()
    assert "warning" in text and "dropped" in text  # there was something to silence
    assert quiet.stderr == b""
    # the results are the same, and the printed table is output, not a log: still on stdout
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert quiet.stdout == loud.stdout and b"zphot" in quiet.stdout
    lines = (tmp_path / "b.csv").read_text().splitlines()
    assert lines[1].split(",")[1] == "58"  # N: 60 rows less the NaN truth and the null zphot
    # with -o - the table goes to stdout in --format and the printed one to stderr; -q keeps
    # stderr empty there too
    r = pz("pz-score", *args, "-q", "-o", "-", "--format", "csv")
    assert r.returncode == 0 and r.stderr == b""
    assert r.stdout.decode() == (tmp_path / "b.csv").read_text()
