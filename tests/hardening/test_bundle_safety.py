"""Model bundles are data from strangers: no pickle, no code, no file outside the folder.

The members here are hand-made Keras archives (zip files with config.json), so these tests need
no Keras: every refusal happens before Keras is imported.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import pytest

from photoz_tools.model import bundle as B
from photoz_tools.pdf import Bins

ROOT = Path(__file__).resolve().parents[2]
DENSE = {
    "module": "keras.layers",
    "class_name": "Dense",
    "config": {"units": 180},
    "registered_name": None,
}
LAMBDA = {
    "module": "keras.layers",
    "class_name": "Lambda",
    "config": {
        "function": {
            "module": "builtins",
            "class_name": "function",
            "config": "print",
            "registered_name": "function",
        }
    },
    "registered_name": None,
}
FOREIGN = {"module": "evil.layers", "class_name": "Boom", "config": {}, "registered_name": "Boom"}


def _archive(f: Path, layers: list[dict], extra: dict[str, bytes] | None = None) -> Path:
    config = {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {"layers": layers},
        "registered_name": "Functional",
    }
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", "{}")
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return f


def _bundle(folder: Path, files: list[str] | None = None, layers=None, extra=None) -> Path:
    """A bundle folder whose manifest lists `files` (default: one good member)."""
    folder.mkdir(parents=True, exist_ok=True)
    member = _archive(folder / "member_0.keras", layers or [DENSE], extra)
    digest = hashlib.sha256(member.read_bytes()).hexdigest()
    manifest = B.manifest_header({"n_bins": 180}, Bins.default(), "none", "test")
    manifest["members"] = [{"file": f, "sha256": digest} for f in (files or [member.name])]
    (folder / B.MANIFEST).write_text(json.dumps(manifest))
    return folder


def test_a_plain_member_passes_the_checks(tmp_path):
    b = _bundle(tmp_path / "b")
    B.load_bundle(b, load_members=False)
    B.check_member_archive(b / "member_0.keras")


@pytest.mark.parametrize(
    "name", ["../member_0.keras", "/etc/passwd", "sub/member_0.keras", "..", "", "a\\..\\b.keras"]
)
def test_member_paths_cannot_leave_the_folder(tmp_path, name):
    b = _bundle(tmp_path / "b", files=[name])
    with pytest.raises(B.BundleError, match="not a plain file name"):
        B.load_bundle(b, load_members=False)


def test_a_member_linked_out_of_the_folder_is_refused(tmp_path):
    outside = _archive(tmp_path / "outside.keras", [DENSE])
    b = _bundle(tmp_path / "b", files=["link.keras"])
    (b / "link.keras").symlink_to(outside)
    with pytest.raises(B.BundleError, match="link out of the bundle"):
        B.load_bundle(b, load_members=False)


def test_a_tampered_member_is_refused(tmp_path):
    b = _bundle(tmp_path / "b")
    with open(b / "member_0.keras", "ab") as f:
        f.write(b"\0")
    with pytest.raises(B.BundleError, match="does not match its sha256"):
        B.load_bundle(b, load_members=False)


@pytest.mark.parametrize(
    ("layers", "extra", "why"),
    [
        ([DENSE, LAMBDA], None, "Lambda layer"),
        ([FOREIGN], None, "evil.layers"),
        ([DENSE], {"model.pkl": b"\x80\x04K\x01."}, "unexpected files"),
        ([DENSE], {"../escape.h5": b""}, "unexpected files"),
    ],
)
def test_code_and_pickles_in_a_member_are_refused_before_keras(tmp_path, layers, extra, why):
    """Refused by load_bundle itself (hashes right), before Keras is imported."""
    b = _bundle(tmp_path / "b", layers=layers, extra=extra)
    with pytest.raises(B.BundleError, match=why):
        B.load_bundle(b)


@pytest.mark.parametrize(
    "manifest",
    [
        [],
        {"format": B.FORMAT, "format_version": "x"},
        {"format": B.FORMAT, "format_version": 1, "members": [{"file": "m.keras"}]},
        {"format": B.FORMAT, "format_version": 1, "members": "m.keras"},
    ],
)
def test_malformed_manifests_get_one_line(tmp_path, manifest):
    (tmp_path / B.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(B.BundleError) as info:
        B.verify(tmp_path)
    assert "\n" not in str(info.value)


def test_no_pickle_and_no_unsafe_loading_in_the_package():
    """No module unpickles or loads Keras outside safe mode."""
    pattern = re.compile(
        r"pickle\.loads?\(|allow_pickle\s*=\s*True|safe_mode\s*=\s*False"
        r"|enable_unsafe_deserialization|torch\.load|joblib\.load|dill\."
    )
    hits = [
        f"{p}:{m.group(0)}"
        for p in (ROOT / "photoz_tools").rglob("*.py")
        for m in pattern.finditer(p.read_text())
    ]
    assert not hits
    loads = [
        p
        for p in (ROOT / "photoz_tools").rglob("*.py")
        if ".load_model(" in p.read_text() and "safe_mode=True" not in p.read_text()
    ]
    assert not loads
