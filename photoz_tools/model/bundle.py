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
    except (ValueError, OSError) as exc:
        raise BundleError(f"{mpath}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath}: not a photoz-tools model bundle manifest")
    version = manifest.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{mpath}: format_version {version!r} is not an integer")
    if version > FORMAT_VERSION:
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
    members = _members(path, manifest)
    for m in members:
        f = member_path(path, m["file"])
        if not f.is_file():
            raise BundleError(f"{path}: member {m['file']} is missing; retrain or restore it")
        digest = sha256_file(f)
        if digest != m["sha256"]:
            raise BundleError(
                f"{path}: member {m['file']} does not match its sha256 in {MANIFEST} "
                f"({digest[:12]}... != {m['sha256'][:12]}...): the bundle was altered; "
                "retrain it or restore the original files"
            )


def _members(path: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's member entries, each with a str `file` and a 64-hex `sha256`."""
    members = manifest.get("members")
    if not members:
        raise BundleError(f"{path}: the manifest lists no members")
    if not isinstance(members, list):
        raise BundleError(f"{path}: the manifest's members are not a list")
    for m in members:
        ok = (
            isinstance(m, dict)
            and isinstance(m.get("file"), str)
            and isinstance(m.get("sha256"), str)
            and len(m["sha256"]) == 64
        )
        if not ok:
            raise BundleError(
                f"{path}: a member entry of {MANIFEST} lacks its file name or sha256 ({m!r:.80})"
            )
    return members


def member_path(path: Path, name: str) -> Path:
    """`path / name`, refusing a name that could reach outside the bundle folder.

    A manifest is data from whoever made the bundle: ``../x``, ``/etc/x``, a sub-folder or a
    symbolic link out of the folder would let it hash or load a file it does not own.
    """
    plain = name == os.path.basename(name) and name not in ("", ".", "..") and "\\" not in name
    if not plain or os.path.isabs(name) or any(ord(c) < 32 for c in name):
        raise BundleError(
            f"{path}: member file {name!r} in {MANIFEST} is not a plain file name in the "
            "bundle folder; the manifest was altered"
        )
    f = path / name
    if f.is_symlink() and not f.resolve().is_relative_to(path.resolve()):
        raise BundleError(f"{path}: member {name} is a link out of the bundle folder; refused")
    return f


#: what a Keras 3 ``.keras`` archive holds; anything else (a pickle, code) is refused
KERAS_ARCHIVE_FILES = {"config.json", "metadata.json", "model.weights.h5"}
_SAFE_MODULES = ("keras", "photoz_tools.")
_CODE_CLASSES = {"Lambda", "TFOpLambda", "__lambda__", "function", "__python_function__"}


def check_member_archive(f: Path) -> None:
    """Refuse a member that is not a plain Keras archive of known layers, before Keras reads it.

    Keras' safe mode refuses lambdas' bytecode, but a Lambda layer naming a registered function,
    or a custom class from any importable module, would still run foreign code: only Keras'
    own classes and photoz-tools' are accepted, and no file beside config, metadata and weights.
    """
    import zipfile

    try:
        with zipfile.ZipFile(f) as z:
            names = set(z.namelist())
            extra = sorted(names - KERAS_ARCHIVE_FILES)
            if extra or "config.json" not in names:
                what = f"unexpected files {extra[:3]}" if extra else "no config.json"
                raise BundleError(f"{f}: not a plain Keras model archive ({what}); refused")
            config = json.loads(z.read("config.json"))
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{f}: not a readable Keras model archive ({exc})") from None
    bad = _foreign_classes(config)
    if bad:
        raise BundleError(
            f"{f}: holds {bad} (code, not layers); photoz-tools loads only Keras' own layers "
            "and its own: refused"
        )


def _foreign_classes(node: Any) -> str | None:
    """The first layer or object in a Keras config that is code or comes from a foreign module."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        cls = item.get("class_name")
        module = item.get("module")
        if isinstance(cls, str) and cls in _CODE_CLASSES:
            return f"a {cls} layer"
        if isinstance(module, str) and not module.startswith(_SAFE_MODULES):
            return f"class {cls} from module {module}"
        registered = item.get("registered_name")
        if isinstance(registered, str) and ">" in registered:
            if not registered.startswith("photoz_tools>"):
                return f"custom object {registered}"
        stack.extend(item.values())
    return None


def check_compatible(path: str | Path, manifest: dict[str, Any], bins: Bins | None = None) -> None:
    """Refuse a bundle made for other inputs, or for other bins than `bins` (when given)."""
    from photoz_tools.pdf import Bins

    inputs = manifest.get("inputs")
    for key, spec in INPUTS.items():
        got = inputs.get(key) if isinstance(inputs, dict) else None
        if not isinstance(got, dict) or [got.get("shape"), got.get("unit")] != [
            spec["shape"],
            spec["unit"],
        ]:
            raise BundleError(
                f"{path}: the bundle was made for inputs {json.dumps(inputs)[:200]}, but "
                f"pz-predict feeds {key} {spec['shape']} in {spec['unit']}; use a bundle "
                "trained on 64x64x5 ugriz cutouts in nanomaggies and ebv"
            )
    try:
        mbins = Bins.from_json(json.dumps(manifest["bins"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: the manifest's bins are missing or invalid ({exc})") from None
    if bins is not None and mbins != bins:
        raise BundleError(
            f"{path}: the bundle predicts over {mbins!r}, not the requested "
            f"{bins!r}; use a bundle trained for those bins"
        )
    arch = manifest.get("architecture")
    n_out = arch.get("n_bins", mbins.n) if isinstance(arch, dict) else mbins.n
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
        for m in manifest["members"]:  # before Keras: refuse code without importing it
            check_member_archive(member_path(path, m["file"]))
        from photoz_tools.model import architecture  # noqa: F401  (registers InputScaling)
        from photoz_tools.model.backend import import_keras

        keras = import_keras()

        for m in manifest["members"]:
            f = member_path(path, m["file"])
            try:
                model = keras.saving.load_model(f, compile=False, safe_mode=True)
            except Exception as exc:
                raise BundleError(f"{f}: cannot load ({type(exc).__name__}: {exc})") from None
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
