"""pz-train --assemble: member bundles trained as separate jobs (--member K) joined into one.

Everything that makes the members one ensemble must agree (architecture, bins, inputs, scaling,
data, recipe); what only says how a job ran (checkpointing, workers, which member it was) may
differ, and each member's own record is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from photoz_tools import __version__
from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.model import bundle
from photoz_tools.model.train import Reporter, _noop

_RUN_MECHANICS = (
    "checkpoint_every",
    "checkpoint_minutes",
    "log_every",
    "workers",
    "member_job",
    "distribute",
)


def _first_difference(a: Any, b: Any, where: str) -> tuple[str, Any, Any] | None:
    """The first (field path, value in a, value in b) where `a` and `b` differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*a, *(k for k in b if k not in a)]:
            d = _first_difference(a.get(k), b.get(k), f"{where}.{k}")
            if d is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _first_difference(x, y, f"{where}[{i}]")
            if d is not None:
                return d
        return None
    return None if a == b else (where, a, b)


def _short(v: Any, n: int = 40) -> str:
    text = json.dumps(v)
    return text if len(text) <= n else text[: n - 3] + "..."


def _must_agree(manifest: dict[str, Any]) -> dict[str, Any]:
    """What every bundle of one ensemble must share: what the members compute from (inputs,
    scaling, bins, architecture), the data they saw and how they were trained."""
    data = {k: v for k, v in (manifest.get("data") or {}).items() if k != "path"}
    recipe = {k: v for k, v in (manifest.get("recipe") or {}).items() if k not in _RUN_MECHANICS}
    outputs = sorted({m.get("output", "probabilities") for m in manifest.get("members") or []})
    return {
        "format_version": manifest.get("format_version"),
        "architecture": manifest.get("architecture"),
        "bins": manifest.get("bins"),
        "inputs": manifest.get("inputs"),
        "scaling": manifest.get("scaling"),
        "data": data,
        "recipe": recipe,
        "member output": outputs,
    }


def assemble(
    bundles: list[str | Path],
    output: str | Path,
    *,
    force: bool = False,
    make_default: bool = False,
    reporter: Reporter | None = None,
) -> Path:
    """Join the bundles of member jobs (``pz-train --member K``) into one ensemble bundle.

    Each input is verified (member sha256s); every field that must agree (architecture, bins,
    inputs, scaling, the data's fingerprint and split, the recipe but for --member and the
    checkpoint/log/worker settings) is compared, and the first mismatch is refused naming the
    two bundles and the field. Two bundles holding the same member (or the same member seed)
    are refused. Members are copied byte for byte and ordered by their member number, so the
    result predicts exactly as the full run with those options would; library versions and
    devices, which may differ between jobs, are recorded per member. The bundle is written in
    a hidden folder beside `output`, then renamed into place: nothing is left on failure.
    Bundles may hold several members (a full run, an earlier assembly).
    """
    report = reporter or _noop
    output = Path(output)
    paths = [Path(b) for b in bundles]
    if not paths:
        raise PzUsageError("--assemble: name the member bundles to join")
    if output.exists() and not force:
        raise PzError(f"{output}: already exists; choose another -o or pass --force to replace it")
    manifests = []
    for path in paths:
        manifest = bundle.read_manifest(path)
        bundle.verify(path, manifest)
        manifests.append(manifest)

    ref_path, ref = paths[0], _must_agree(manifests[0])
    for path, manifest in zip(paths[1:], manifests[1:], strict=True):
        diff = _first_difference(ref, _must_agree(manifest), "")
        if diff is not None:
            where, a, b = diff
            raise PzError(
                f"cannot assemble {ref_path} and {path}: {where.lstrip('.')} differs "
                f"({_short(a)} vs {_short(b)}); the members of one ensemble need the same "
                "dataset, architecture, bins and pz-train options but --member"
            )

    members: list[tuple[int, Path, dict[str, Any], dict[str, Any], list]] = []
    seen: dict[int, Path] = {}
    seeds: dict[Any, Path] = {}
    for path, manifest in zip(paths, manifests, strict=True):
        histories = manifest.get("history") or []
        for i, entry in enumerate(manifest["members"]):
            k = int(entry.get("member", i))
            if k in seen:
                raise PzError(f"{path}: member {k} is also in {seen[k]}; assemble each member once")
            seed = entry.get("seed")
            if seed is not None and seed in seeds:
                raise PzError(
                    f"{path}: member {k} has the seed {seed} of a member in {seeds[seed]}; "
                    "an ensemble needs members of different seeds"
                )
            seen[k] = path
            if seed is not None:
                seeds[seed] = path
            history = histories[i] if i < len(histories) else []
            members.append((k, path, manifest, entry, history))
    members.sort(key=lambda t: t[0])

    n_recipe = int((manifests[0].get("recipe") or {}).get("members", len(members)))
    missing = sorted(set(range(n_recipe)) - set(seen))
    if missing:
        report(
            "warning",
            message=f"{output}: assembling {len(members)} of the {n_recipe} members of the run "
            f"(missing: {', '.join(map(str, missing))})",
        )

    output.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".assemble", dir=output.parent))
    try:
        entries = []
        for k, path, manifest, entry, _ in members:
            name = f"member_{k}.keras"
            shutil.copyfile(path / entry["file"], tmp / name)
            digest = bundle.sha256_file(tmp / name)
            if digest != entry["sha256"]:
                raise PzError(f"{path / entry['file']}: changed while it was being copied")
            prev = entry.get("source") or {}  # an earlier assembly keeps the job's own record
            entries.append(
                {
                    **entry,
                    "file": name,
                    "sha256": digest,
                    "member": k,
                    "source": {
                        "bundle": str(path),
                        "hash": bundle.bundle_hash(path),
                        "file": entry["file"],
                        "created": prev.get("created", manifest.get("created")),
                        "data_path": prev.get(
                            "data_path", (manifest.get("data") or {}).get("path")
                        ),
                        "versions": prev.get("versions", manifest.get("versions")),
                        "device": prev.get("device", manifest.get("device")),
                    },
                }
            )
        first = manifests[0]
        versions = [e["source"]["versions"] or {} for e in entries]
        common = {k: v for k, v in versions[0].items() if all(x.get(k) == v for x in versions)}
        devices = list(dict.fromkeys(str(e["source"]["device"]) for e in entries))
        manifest = {
            **first,
            "created_by": f"photoz-tools {__version__}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "recipe": {**first.get("recipe", {}), "member_job": None},
            "seeds": [e.get("seed") for e in entries],
            "members": entries,
            "history": [t[4] for t in members],
            "versions": common,  # what every job shares; each member's own under its "source"
            "device": "; ".join(devices),
            "assembled_from": [
                {
                    "bundle": str(path),
                    "hash": bundle.bundle_hash(path),
                    "members": [int(e.get("member", i)) for i, e in enumerate(m["members"])],
                }
                for path, m in zip(paths, manifests, strict=True)
            ],
        }
        bundle.write_json_atomic(tmp / bundle.MANIFEST, manifest)
        bundle.verify(tmp, manifest)
        old = None
        if output.exists():
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            os.replace(output, old)
        try:
            os.replace(tmp, output)
        except BaseException:
            if old is not None:
                os.replace(old, output)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report(
        "log",
        message=f"{output}: {len(entries)} member(s) "
        f"({', '.join(str(t[0]) for t in members)}) from {len(paths)} bundle(s)",
    )
    if make_default:
        bundle.set_default(output)
    return output
