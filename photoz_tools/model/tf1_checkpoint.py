"""The authors' released TensorFlow-1 weights (jpasquet/Photoz ``pretrained_model/``) as a bundle.

Their folder holds ``checkpoint``, ``-120000.index`` and ``-120000.data-00000-of-00001`` (an empty
prefix at global step 120000) and a ``-120000.meta`` graph, which is not needed: the variables'
names and shapes in the index are enough, because photoz_tools builds the same network (the
``paper`` config, their branch order) and only copies numbers into it. Their data file also holds
Adam's two slots per weight and ``beta1_power``/``beta2_power``, which a prediction never uses.

The checkpoint is read with TensorFlow's own reader (``tf.train.load_checkpoint``), which
understands the format from any TensorFlow version and checks the tensors' checksums. Everything
is read and checked before anything is written, so a refusal leaves nothing behind.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from photoz_tools import __version__
from photoz_tools.errors import PzError

SOURCE = "Pasquet et al. 2019 (A&A 621, A26), released TensorFlow-1 weights, jpasquet/Photoz"
DATA_SUFFIX = ".data-00000-of-00001"
# variables a prediction does not use: Adam's slots and powers, the step counter
_OPTIMIZER = re.compile(r"(/Adam(_1)?$)|(^beta[12]_power$)|(^global_step$)")
_PRELU_KEYS = ("prelu", "prelu_1")  # TensorFlow < 1.9 and >= 1.9 spell the PReLU alpha so


class CheckpointError(PzError):
    """A missing, truncated, corrupt or foreign checkpoint."""


@dataclass
class Checkpoint:
    """The located files of one TF1 checkpoint (and what they hold)."""

    prefix: Path  # e.g. FOLDER/-120000
    shown: str  # how to name it in messages (the user's path, with the zip member if any)
    step: int | None
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    prelu_key: str = "prelu"

    @property
    def index(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".index")

    @property
    def data(self) -> Path:
        return self.prefix.with_name(self.prefix.name + DATA_SUFFIX)


# --------------------------------------------------------------------------- the name mapping


def variable_map(config: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Our layer name -> (their variable scope, kind) for the paper config.

    Their network.py names the inception convolutions by branch: S2_2 is the 1x1 branch, S1_0 ->
    S2_0 the 3x3, S1_1 -> S2_1 the 5x5, S1_2 the 1x1 before the pool; conv0 is C1; fc0, fc0b the
    two hidden dense layers and fc1 the logits."""
    out: dict[str, tuple[str, str]] = {"c1": ("conv0", "conv")}
    n_blocks = sum(1 for b in config["blocks"] if b != "pool")
    for k in range(n_blocks):
        scope = f"I{k}_/I{k}_"
        ours = f"inc{k + 1}"
        branches = {"a1x1": "S2_2", "b1x1": "S1_0", "b3x3": "S2_0", "d1x1": "S1_2"}
        if not (config["last_without_5x5"] and k == n_blocks - 1):
            branches.update({"c1x1": "S1_1", "c5x5": "S2_1"})
        for layer, theirs in branches.items():
            out[f"{ours}_{layer}"] = (scope + theirs, "conv")
    dense = ["fc0", "fc0b"]
    if len(config["dense"]) != len(dense):
        raise ValueError("the authors' network has two hidden dense layers")
    for i, theirs in enumerate(dense, start=1):
        out[f"fc{i}"] = (theirs, "dense")
    out["logits"] = ("fc1", "dense")
    return out


def expected_variables(model, config: dict[str, Any], prelu_key: str) -> dict[str, tuple]:
    """Checkpoint variable name -> its shape, for the model built from `config`."""
    shapes: dict[str, tuple] = {}
    for layer, (scope, kind) in variable_map(config).items():
        kernel, bias = model.get_layer(layer).get_weights()
        shapes[f"{scope}/weights"] = tuple(kernel.shape)
        shapes[f"{scope}/biases"] = tuple(bias.shape)
        if kind == "conv":
            (alpha,) = model.get_layer(f"{layer}_prelu").get_weights()
            shapes[f"{scope}/{prelu_key}"] = (alpha.shape[-1],)
    return shapes


def assign(model, config: dict[str, Any], ckpt: Checkpoint) -> None:
    """Copy the checkpoint's tensors into `model`, layer by layer by name (HWIO kernels and
    [in, out] dense weights are Keras's layouts already; a PReLU alpha is per channel)."""
    t = ckpt.tensors
    for layer, (scope, kind) in variable_map(config).items():
        model.get_layer(layer).set_weights([t[f"{scope}/weights"], t[f"{scope}/biases"]])
        if kind == "conv":
            prelu = model.get_layer(f"{layer}_prelu")
            (alpha,) = prelu.get_weights()
            prelu.set_weights([t[f"{scope}/{ckpt.prelu_key}"].reshape(alpha.shape)])


# --------------------------------------------------------------------------- finding the files


def locate(path: Path, workdir: Path) -> Checkpoint:
    """The checkpoint in a folder, at a prefix, or in a zip (its three files extracted into
    `workdir`, by their base names only: a member's path can never escape)."""
    if not path.exists() and not Path(str(path) + ".index").exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_file() and zipfile.is_zipfile(path):
        return _from_zip(path, workdir)
    if path.is_dir():
        return _from_folder(path)
    if path.with_name(path.name + ".index").is_file():
        return _checked(Checkpoint(path, str(path), _step(path.name)))
    raise CheckpointError(
        f"{path}: neither a checkpoint folder (with a *.index file), a checkpoint prefix "
        "nor a zip of one"
    )


def _step(prefix_name: str) -> int | None:
    m = re.search(r"-(\d+)$", prefix_name)
    return int(m.group(1)) if m else None


def _choose(prefixes: list[str], checkpoint_text: str | None, where: str) -> str:
    """One prefix among the *.index files: the only one, else the `checkpoint` file's latest."""
    if len(prefixes) == 1:
        return prefixes[0]
    if not prefixes:
        raise CheckpointError(f"{where}: no TensorFlow checkpoint in it (no *.index file)")
    if checkpoint_text:
        m = re.search(r'^model_checkpoint_path:\s*"(.*)"', checkpoint_text, re.M)
        if m:
            name = m.group(1).replace("\\", "/").rsplit("/", 1)[-1]
            if name in prefixes:
                return name
    raise CheckpointError(
        f"{where}: holds several checkpoints ({', '.join(sorted(prefixes))}) and no "
        "`checkpoint` file naming one of them; give the prefix, e.g. "
        f"{where.rstrip('/')}/{sorted(prefixes)[-1]}"
    )


def _from_folder(folder: Path) -> Checkpoint:
    prefixes = [p.name[: -len(".index")] for p in folder.glob("*.index") if p.is_file()]
    ckfile = folder / "checkpoint"
    text = ckfile.read_text(errors="replace") if ckfile.is_file() else None
    name = _choose(prefixes, text, str(folder))
    return _checked(Checkpoint(folder / name, str(folder / name), _step(name)))


def _from_zip(path: Path, workdir: Path) -> Checkpoint:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            index = {}
            for i in infos:
                base = i.filename.rsplit("/", 1)[-1]
                if base.endswith(".index"):
                    index[base[: -len(".index")]] = i
            text = None
            for i in infos:
                if i.filename.rsplit("/", 1)[-1] == "checkpoint":
                    text = zf.read(i).decode(errors="replace")
            name = _choose(list(index), text, str(path))
            folder = index[name].filename.rpartition("/")[0]
            members = {f"{name}.index": index[name]}
            for i in infos:
                if i.filename == (f"{folder}/" if folder else "") + name + DATA_SUFFIX:
                    members[name + DATA_SUFFIX] = i
            if len(members) < 2:
                raise CheckpointError(
                    f"{path}: {index[name].filename} has no {name + DATA_SUFFIX} beside it"
                )
            for base, info in members.items():
                with zf.open(info) as src, open(workdir / base, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, EOFError, zlib_error()) as exc:
        raise CheckpointError(f"{path}: unreadable zip ({exc})") from None
    shown = f"{path}:{index[name].filename[: -len('.index')]}"
    return _checked(Checkpoint(workdir / name, shown, _step(name)))


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def _checked(ckpt: Checkpoint) -> Checkpoint:
    for f in (ckpt.index, ckpt.data):
        if not f.is_file():
            raise CheckpointError(f"{ckpt.shown}: {f.name} is missing")
    return ckpt


# --------------------------------------------------------------------------- reading


def read(ckpt: Checkpoint, expected: Callable[[str], dict[str, tuple]]) -> None:
    """Read and check every variable `expected(prelu_key)` names into `ckpt.tensors`.

    Refuses a truncated data file (smaller than the index's variables need), a corrupt one
    (TensorFlow's checksums), and a checkpoint of another network: a missing variable, a shape
    that differs, or a variable that is neither ours nor the optimiser's, each by name."""
    from photoz_tools.model.backend import quiet_fd2

    try:
        with quiet_fd2():
            import tensorflow as tf
    except ImportError:
        raise CheckpointError(
            "reading a TensorFlow-1 checkpoint needs TensorFlow, which is not installed "
            "(pip install 'photoz-tools[cnn]')"
        ) from None
    try:
        reader = tf.train.load_checkpoint(str(ckpt.prefix))
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except Exception as exc:  # TensorFlow raises OpError subclasses, or plain errors
        raise CheckpointError(
            f"{ckpt.shown}.index: not a readable TensorFlow checkpoint index "
            f"(truncated or corrupt: {_first_line(exc)})"
        ) from None
    need = sum(int(np.prod(s)) * dtypes[k].size for k, s in shapes.items() if k in dtypes)
    have = ckpt.data.stat().st_size
    if have < need:
        raise CheckpointError(
            f"{ckpt.shown}{DATA_SUFFIX}: truncated ({have:,} bytes; its index needs {need:,})"
        )
    ckpt.prelu_key = next(
        (k for k in _PRELU_KEYS if any(v.endswith("/" + k) for v in shapes)), "prelu"
    )
    want = expected(ckpt.prelu_key)
    for name in sorted(shapes):
        if name not in want and not _OPTIMIZER.search(name):
            raise CheckpointError(
                f"{ckpt.shown}: variable {name} {list(shapes[name])} is not in the authors' "
                "network (a checkpoint of another network?)"
            )
    for name, shape in want.items():
        if name not in shapes:
            raise CheckpointError(
                f"{ckpt.shown}: no variable {name} (a checkpoint of another network?)"
            )
        if tuple(shapes[name]) != tuple(shape):
            raise CheckpointError(
                f"{ckpt.shown}: variable {name} has shape {list(shapes[name])}, the authors' "
                f"network {list(shape)} (a checkpoint of another network?)"
            )
        try:
            value = reader.get_tensor(name)
        except Exception as exc:
            raise CheckpointError(
                f"{ckpt.shown}{DATA_SUFFIX}: cannot read {name} (truncated or corrupt: "
                f"{_first_line(exc)})"
            ) from None
        value = np.asarray(value, dtype=np.float32)
        if not np.isfinite(value).all():
            raise CheckpointError(f"{ckpt.shown}: variable {name} holds NaN or infinite values")
        ckpt.tensors[name] = value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- the bundle


def import_checkpoint(
    source: str | Path,
    output: str | Path,
    *,
    force: bool = False,
    log: Callable[[str], None] = lambda m: None,
) -> Path:
    """Convert the authors' checkpoint (folder, prefix or zip) into the bundle folder `output`.

    All reading and checking happens first; the bundle is then written into a hidden folder
    beside `output` and renamed into place, so a failure never leaves a partial bundle."""
    from photoz_tools.model import bundle as bundlemod
    from photoz_tools.pdf import Bins

    source, output = Path(source), Path(output)
    if output.exists() and not force:
        raise PzError(f"{output}: already exists; choose another -o or pass --force to replace it")
    if not output.parent.is_dir():
        raise PzError(f"{output}: its folder {output.parent} does not exist")
    with tempfile.TemporaryDirectory(prefix="pz-import-") as tmp:
        ckpt = locate(source, Path(tmp))
        log(f"reading {ckpt.shown}")
        from photoz_tools.model import architecture  # Keras: only once the files are found

        config = architecture.load_config("paper")
        model = architecture.build_model(config, seed=0)
        read(ckpt, lambda key: expected_variables(model, config, key))
        data_sha = bundlemod.sha256_file(ckpt.data)
        index_sha = bundlemod.sha256_file(ckpt.index)
    assign(model, config, ckpt)
    manifest = bundlemod.manifest_header(
        config, Bins.default(), "none", f"photoz-tools {__version__} (pz-import)"
    )
    manifest.update(
        {
            "source": {
                "what": SOURCE,
                "path": str(source),
                "checkpoint": ckpt.shown,
                "step": ckpt.step,
                "data_sha256": data_sha,
                "index_sha256": index_sha,
                "prelu_key": ckpt.prelu_key,
                "variables": len(ckpt.tensors),
                "skipped": "Adam slots, beta1_power, beta2_power (training state)",
            },
            "members": [],
            "versions": {"photoz-tools": __version__},
        }
    )
    _write(model, manifest, output, force)
    return output


def _write(model, manifest: dict[str, Any], output: Path, force: bool) -> None:
    from photoz_tools.model import backend
    from photoz_tools.model import bundle as bundlemod

    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".importing", dir=output.parent))
    try:
        entry = bundlemod.save_member(
            model, work, 0, seed=None, steps=manifest["source"]["step"], output="probabilities"
        )
        manifest["members"] = [entry]
        manifest["versions"].update(backend.versions())
        bundlemod.write_json_atomic(work / bundlemod.MANIFEST, manifest)
        work.chmod(0o777 & ~bundlemod._umask())
        if output.exists() and force:
            shutil.rmtree(output)
        work.replace(output)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
