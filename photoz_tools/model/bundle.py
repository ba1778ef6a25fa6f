"""Model bundles: a directory of ensemble members (native ``.keras`` files) and ``manifest.json``.

The manifest records everything a prediction depends on (architecture config, redshift bins,
the expected inputs and their scaling, the training data's fingerprint, the recipe, seeds,
per-member validation metrics, library versions) and the sha256 of every member file, so that a
bundle that was altered, or made for other bins or inputs, is refused instead of silently giving
wrong redshifts. A bundle's identity (its "hash", written into every prediction's provenance) is
the sha256 of its manifest, which covers the members through their hashes.

Reading a manifest and the default-bundle registry need no Keras; loading members does (lazily,
always with ``safe_mode=True``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photoz_tools.errors import PzError

if TYPE_CHECKING:
    import keras

    from photoz_tools.pdf import Bins

MANIFEST = "manifest.json"
FORMAT = "photoz-tools-model-bundle"
FORMAT_VERSION = 1
# What pz-predict feeds a model: a bundle that expects anything else is refused.
INPUTS: dict[str, Any] = {
    "image": {
        "shape": [64, 64, 5],
        "dtype": "float32",
        "unit": "nanomaggy",
        "bands": "ugriz",
        "layout": "image[y, x, band], SWarp north up east left",
    },
    "ebv": {"shape": [1], "dtype": "float32", "unit": "mag", "what": "SFD E(B-V)"},
}


class BundleError(PzError):
    """A missing, altered or incompatible model bundle."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temporary file in the same folder and a rename (never half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def manifest_header(
    config: dict[str, Any], bins: Bins, scaling: str, created_by: str
) -> dict[str, Any]:
    """The fields every bundle's manifest starts with, whoever makes it (pz-train, pz-import,
    a benchmark): format, architecture, bins, inputs and scaling."""
    import time

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_by": created_by,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "architecture": config,
        "bins": [float(e) for e in bins.edges],
        "inputs": INPUTS,
        "scaling": scaling,
    }


def save_member(model: keras.Model, folder: Path, k: int, **info: Any) -> dict[str, Any]:
    """Save `model` as member `k` of the bundle in `folder`; returns its manifest entry."""
    path = Path(folder) / f"member_{k}.keras"
    model.save(path)
    return {"file": path.name, "sha256": sha256_file(path), "member": k, **info}


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the bundle at `path`, checked for format (no Keras import)."""
    path = Path(path)
    mpath = path / MANIFEST
    if not path.exists():
        raise BundleError(f"{path}: no such model bundle")
    if not mpath.is_file():
        raise BundleError(f"{path}: not a model bundle (no {MANIFEST}); train one with pz-train")
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError as exc:
        raise BundleError(f"{mpath}: unreadable manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath}: not a photoz-tools model bundle manifest")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format {manifest.get('format_version')} is newer than "
            f"this photoz-tools understands ({FORMAT_VERSION}); upgrade photoz-tools"
        )
    return manifest


def bundle_hash(path: str | Path) -> str:
    """The bundle's identity: sha256 of its manifest (which holds each member's sha256)."""
    return sha256_file(Path(path) / MANIFEST)


def verify(path: str | Path, manifest: dict[str, Any] | None = None) -> None:
    """Refuse a bundle whose member files are missing or differ from their recorded sha256."""
    path = Path(path)
    manifest = manifest if manifest is not None else read_manifest(path)
    members = manifest.get("members") or []
    if not members:
        raise BundleError(f"{path}: the manifest lists no members")
    for m in members:
        f = path / m["file"]
        if not f.is_file():
            raise BundleError(f"{path}: member {m['file']} is missing; retrain or restore it")
        digest = sha256_file(f)
        if digest != m["sha256"]:
            raise BundleError(
                f"{path}: member {m['file']} does not match its sha256 in {MANIFEST} "
                f"({digest[:12]}... != {m['sha256'][:12]}...): the bundle was altered; "
                "retrain it or restore the original files"
            )


def check_compatible(path: str | Path, manifest: dict[str, Any], bins: Bins | None = None) -> None:
    """Refuse a bundle made for other inputs, or for other bins than `bins` (when given)."""
    from photoz_tools.pdf import Bins

    inputs = manifest.get("inputs")
    for key, spec in INPUTS.items():
        got = (inputs or {}).get(key)
        if got is None or got.get("shape") != spec["shape"] or got.get("unit") != spec["unit"]:
            raise BundleError(
                f"{path}: the bundle was made for inputs {json.dumps(inputs)}, but pz-predict "
                f"feeds {key} {spec['shape']} in {spec['unit']}; use a bundle trained on "
                "64x64x5 ugriz cutouts in nanomaggies and ebv"
            )
    mbins = Bins.from_json(json.dumps(manifest["bins"]))
    if bins is not None and mbins != bins:
        raise BundleError(
            f"{path}: the bundle predicts over {mbins!r}, not the requested "
            f"{bins!r}; use a bundle trained for those bins"
        )
    n_out = manifest.get("architecture", {}).get("n_bins", mbins.n)
    if n_out != mbins.n:
        raise BundleError(f"{path}: architecture has {n_out} outputs but {mbins.n} bins")


@dataclass
class Bundle:
    """A loaded bundle: its manifest, bins, hash and the member models (safe-mode loaded)."""

    path: Path
    manifest: dict[str, Any]
    bins: Bins
    hash: str
    members: list[keras.Model] = field(default_factory=list)

    @property
    def scaling(self) -> str:
        return self.manifest.get("scaling", "none")


def load_bundle(path: str | Path, bins: Bins | None = None, load_members: bool = True) -> Bundle:
    """Open a bundle: read and check the manifest, verify hashes, load members in safe mode."""
    from photoz_tools.pdf import Bins

    path = Path(path)
    manifest = read_manifest(path)
    check_compatible(path, manifest, bins)
    verify(path, manifest)
    bundle = Bundle(
        path=path,
        manifest=manifest,
        hash=bundle_hash(path),
        bins=Bins.from_json(json.dumps(manifest["bins"])),
    )
    if load_members:
        from photoz_tools.model import architecture  # noqa: F401  (registers InputScaling)
        from photoz_tools.model.backend import import_keras

        keras = import_keras()

        for m in manifest["members"]:
            try:
                model = keras.saving.load_model(path / m["file"], compile=False, safe_mode=True)
            except Exception as exc:
                raise BundleError(
                    f"{path / m['file']}: cannot load ({type(exc).__name__}: {exc})"
                ) from None
            out = model.outputs[0].shape[-1]
            if out != bundle.bins.n:
                raise BundleError(
                    f"{path / m['file']}: {out} outputs, manifest has {bundle.bins.n} bins"
                )
            bundle.members.append(model)
    return bundle


# --------------------------------------------------------------------------- default bundle


def data_dir() -> Path:
    """The platform data folder of photoz-tools ($XDG_DATA_HOME or ~/.local/share)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "photoz-tools"


def _registry() -> Path:
    return data_dir() / "default-model.json"


def set_default(path: str | Path) -> Path:
    """Register the bundle at `path` as the user's default (checked first)."""
    path = Path(path).resolve()
    read_manifest(path)
    reg = _registry()
    reg.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(reg, {"path": str(path)})
    return path


def registered_default() -> Path | None:
    """The registered default bundle, or None."""
    reg = _registry()
    if not reg.is_file():
        return None
    try:
        return Path(json.loads(reg.read_text())["path"])
    except (ValueError, KeyError, TypeError):
        return None


def resolve(model: str | None) -> Path:
    """The bundle to use: `model`, else $PZ_MODEL, else the registered default, else an error
    that says how to get one."""
    if model:
        return Path(model)
    env = os.environ.get("PZ_MODEL")
    if env:
        return Path(env)
    reg = registered_default()
    if reg is not None:
        return reg
    raise BundleError(
        "no model bundle: name one with -m BUNDLE or $PZ_MODEL, or make one the default "
        "(pz-train DATASET -o BUNDLE --default, or pz-predict --set-default BUNDLE)"
    )
