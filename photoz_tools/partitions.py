"""Partitioned catalogues, processed one partition at a time and idempotently (cron reruns).

A folder of Parquet files is one catalogue: plain, hive-style (``key=value/``), or a HATS
catalogue's Parquet tree (``Norder=K/Dir=D/Npix=N.parquet``, where ``Npix=N`` may be a folder).
A HATS catalogue or collection (a ``hats.properties`` or ``collection.properties`` file) is read
with hats' own reader, and of a collection only the main catalogue (never its margins, which
repeat neighbouring rows); other folders are listed as pyarrow lists a dataset: every
``*.parquet`` file, where names starting with ``_`` or ``.`` (``_metadata``, temporaries, locks)
are not data. Each input partition gives one output file at the same relative path, so a HATS
catalogue in gives a HATS-shaped catalogue out.

A rerun redoes only the partitions whose output is missing or stale: older than its input, or
made from another input, by another model bundle or with other options (the `key`). The record
of what made an output lives in the output's own Parquet metadata (``pz_partition``), so it can
never disagree with the data. A lock per output partition (an atomic create) keeps two runs
from writing the same file; a lock whose process is gone is recognised and taken over.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photoz_tools.errors import PzError, PzUsageError

META_KEY = "pz_partition"
IGNORED_PREFIXES = (".", "_")  # what pyarrow, Spark and LSDB skip
# a lock of another machine cannot be checked: taken over only when this old
FOREIGN_LOCK_HOURS = float(os.environ.get("PZ_LOCK_STALE_HOURS", "24"))


@dataclass(frozen=True)
class Partition:
    """One input file of a partitioned catalogue and its path relative to the catalogue."""

    path: Path
    rel: str


def is_partitioned(source: Any) -> bool:
    """A folder given where a table is expected: read it as a partitioned catalogue."""
    return source not in (None, "-") and Path(os.fspath(source)).is_dir()


def discover(root: str | Path) -> list[Partition]:
    """The data files of a partitioned catalogue, in a fixed (sorted) order."""
    root = Path(root)
    files = _hats_files(root) if _is_hats(root) else _listed(root)
    if not files:
        raise PzError(f"{root}: a folder with no Parquet file; give a table or a catalogue folder")
    parts = [Partition(f, f.relative_to(root).as_posix()) for f in files]
    return sorted(parts, key=lambda p: p.rel)


def _listed(root: Path) -> list[Path]:
    """Every *.parquet file under `root` whose path has no part starting with ``_`` or ``.``
    (pyarrow's listing rules; a corrupt .parquet file is kept, so that it fails with a count
    rather than vanishing)."""
    from pyarrow import fs

    try:
        infos = fs.LocalFileSystem().get_file_info(fs.FileSelector(str(root), recursive=True))
    except OSError as exc:
        raise PzError(f"{root}: cannot list it ({exc})") from None
    return [
        Path(i.path)
        for i in infos
        if i.type == fs.FileType.File
        and i.path.endswith(".parquet")
        and _visible(Path(i.path), root)
    ]


def _is_hats(root: Path) -> bool:
    """A HATS catalogue or collection: described by its own properties file."""
    return (root / "hats.properties").is_file() or (root / "collection.properties").is_file()


def _hats_files(root: Path) -> list[Path]:
    """The data files of a HATS catalogue, found with hats' own reader; for a collection (what
    LSDB's write_catalog makes), those of its main catalogue only: a margin catalogue repeats
    its neighbours' rows and would predict them twice."""
    try:
        import hats
        from hats.io import paths
    except ImportError:
        raise PzError(
            f"{root}: a HATS catalogue; reading one needs hats (pip install 'photoz-tools[scale]')"
        ) from None
    try:
        catalog = hats.read_hats(root)
        catalog = getattr(catalog, "main_catalog", catalog)  # a collection: its main catalogue
        pixels = catalog.get_healpix_pixels()
        base = catalog.catalog_base_dir
        located = [Path(str(paths.pixel_catalog_file(base, pixel))) for pixel in pixels]
    except Exception as exc:
        raise PzError(f"{root}: cannot read it as a HATS catalogue ({exc})") from None
    files: list[Path] = []
    for p in located:
        if p.is_dir():  # Npix=N may itself be a folder of files
            files.extend(sorted(f for f in p.rglob("*.parquet") if _visible(f, p)))
        elif p.is_file():
            files.append(p)
        else:
            raise PzError(f"{root}: HATS partition {p} is listed but missing")
    return files


def _visible(f: Path, under: Path) -> bool:
    return not any(part.startswith(IGNORED_PREFIXES) for part in f.relative_to(under).parts)


# --------------------------------------------------------------------------- the commands' options


def check_output_folder(
    source: str | Path, output: str | Path | None, what: str = "outputs"
) -> Path:
    """The output folder for a partitioned input: given, not a file, not inside the input."""
    if output in (None, "", "-"):
        raise PzUsageError(
            f"-o: {source} is a catalogue folder, so the {what} are a folder too: "
            "give -o FOLDER (one output file per input partition)"
        )
    out = Path(os.fspath(output))
    if out.exists() and not out.is_dir():
        raise PzUsageError(f"-o {out}: a file; a partitioned input needs an output folder")
    src, dst = Path(source).resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise PzUsageError(
            f"-o {out}: inside the input catalogue {source}; its files would be read as input"
        )
    return out


def parse_scheduler(text: str | None) -> str | int | None:
    """--scheduler ADDRESS (a running dask scheduler, tcp://host:8786) or local[:N] (a
    LocalCluster of N worker processes, default: the cores) -> the address, or N."""
    if text is None:
        return None
    if text == "local" or text.startswith("local:"):
        n_text = text.partition(":")[2] or str(os.cpu_count() or 1)
        try:
            n = int(n_text)
        except ValueError:
            n = 0
        if n < 1:
            raise PzUsageError(f"--scheduler {text}: local:N needs N >= 1 worker processes")
        return n
    if "://" not in text and ":" not in text:
        raise PzUsageError(
            f"--scheduler {text}: expected a scheduler address (tcp://host:8786) or local[:N]"
        )
    return text


@contextlib.contextmanager
def dask_client(scheduler: str | int) -> Iterator[object]:
    """A dask.distributed client: to the scheduler at an address, or to a LocalCluster of N
    single-threaded worker processes (closed at the end)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise PzUsageError(
            "--scheduler needs dask.distributed (pip install 'photoz-tools[scale]')"
        ) from None
    if isinstance(scheduler, int):
        # the cores shared out between the workers rather than each claiming all of them
        # (benchmarks/partitions_bench.py: on 2 cores more workers only add start-up cost)
        per_worker = str(max(1, (os.cpu_count() or 1) // scheduler))
        threads = {v: per_worker for v in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")}
        cluster = LocalCluster(
            n_workers=scheduler,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={**threads, "TF_NUM_INTEROP_THREADS": "1"},
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
    else:
        try:
            client = Client(scheduler, timeout=30)
        except OSError as exc:
            raise PzError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        with client:
            yield client


# --------------------------------------------------------------------------- array jobs


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``I/N`` (I from 0, as HTCondor's $(Process) and Slurm's array index) -> (I, N)."""
    if text is None:
        return None
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise PzUsageError(f"--shard {text}: expected I/N, e.g. 0/4 (I counted from 0)") from None
    if n < 1 or not 0 <= i < n:
        raise PzUsageError(f"--shard {text}: I must satisfy 0 <= I < N (N >= 1)")
    return i, n


def shard_of(rel: str, n: int) -> int:
    """The shard of a partition: from its relative path alone, so that a partition keeps its
    shard when the catalogue grows (a nightly array job never moves old partitions around)."""
    digest = hashlib.sha256(rel.encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def select_shard(parts: list[Partition], shard: tuple[int, int] | None) -> list[Partition]:
    if shard is None:
        return parts
    i, n = shard
    return [p for p in parts if shard_of(p.rel, n) == i]


# --------------------------------------------------------------------------- up to date?


def run_key(**options: Any) -> str:
    """The identity of what makes an output: model bundle hash and the options that change it."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def stamp(part: Partition, key: str) -> dict[str, str]:
    """Metadata to write into the output of `part`: what made it."""
    st = part.path.stat()
    record = {"input": part.rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "key": key}
    return {META_KEY: json.dumps(record)}


def up_to_date(part: Partition, output: Path, key: str) -> bool:
    """The output exists, is newer than its input and was made from this input by `key`."""
    if not output.is_file():
        return False
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(output).metadata or {}
        record = json.loads(meta.get(META_KEY.encode(), b"{}"))
    except Exception:  # unreadable: remade
        return False
    st = part.path.stat()
    return (
        record.get("key") == key
        and record.get("input") == part.rel
        and record.get("size") == st.st_size
        and record.get("mtime_ns") == st.st_mtime_ns
        and output.stat().st_mtime_ns >= st.st_mtime_ns
    )


# --------------------------------------------------------------------------- locks


class Lock:
    """``.NAME.lock`` beside an output file, created atomically (O_EXCL) with the owner's host
    and pid; a lock left by a dead process of this host is taken over."""

    def __init__(self, output: Path) -> None:
        self.path = output.with_name(f".{output.name}.lock")
        self.held = False

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale():
                    return False
                self.path.unlink(missing_ok=True)  # a dead owner's: take it over
                self._clear_leftovers()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "t": time.time()}, f)
            self.held = True
            return True
        return False

    def clear_if_abandoned(self) -> None:
        """Remove the lock and the temporaries of an owner known to be dead (this host)."""
        if self.path.exists() and self._stale():
            self.path.unlink(missing_ok=True)
            self._clear_leftovers()

    def _clear_leftovers(self) -> None:
        """The temporary files a killed owner was writing (``.NAME.*.tmp``, as the table
        writers name them): only the lock's holder writes NAME, so they are the dead one's."""
        name = self.path.name[1 : -len(".lock")]
        for tmp in self.path.parent.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)

    def _stale(self) -> bool:
        try:
            owner = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            owner = {}
        if not owner:  # being written this instant, or garbage: judge by age
            try:
                return time.time() - self.path.stat().st_mtime > 60
            except FileNotFoundError:
                return True
        if owner.get("host") != socket.gethostname():
            return time.time() - float(owner.get("t", 0)) > FOREIGN_LOCK_HOURS * 3600
        try:
            pid = int(owner["pid"])
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError):
            return False
        return _zombie(pid)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet (a Dask nanny's worker) is dead too."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


# --------------------------------------------------------------------------- a run


@dataclass
class Summary:
    """What one run over a partitioned catalogue did (one line on stderr)."""

    total: int = 0
    done: int = 0
    up_to_date: int = 0
    locked: int = 0
    rows: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{self.total:,} partitions: {self.done:,} done, {self.up_to_date:,} up to date, "
            f"{self.locked:,} being done by another run, {len(self.failed):,} failed; "
            f"{self.rows:,} rows, {rate:,.1f} galaxies/s"
        )
        if self.failed:
            text += " (" + "; ".join(f"{rel}: {err}" for rel, err in self.failed) + ")"
        return text


Work = Callable[[Partition, Path, dict[str, str]], int]


def output_path(part: Partition, out_root: Path) -> Path:
    return out_root / part.rel


def process(part: Partition, out_root: Path, key: str, work: Work) -> tuple[str, int, str]:
    """One partition: skip it when up to date or locked by another run, else lock, work,
    unlock. Returns (status, rows, error) with status done, up to date, locked or failed; runs
    in this process or on a Dask worker."""
    out = output_path(part, Path(out_root))
    if up_to_date(part, out, key):
        return "up to date", 0, ""
    lock = Lock(out)
    if not lock.acquire():
        return "locked", 0, ""
    try:
        if up_to_date(part, out, key):  # finished by another run meanwhile
            return "up to date", 0, ""
        return "done", int(work(part, out, stamp(part, key))), ""
    except Exception as exc:  # counted, and the run goes on with the other partitions
        why = str(exc) if isinstance(exc, PzError) else f"{type(exc).__name__}: {exc}"
        return "failed", 0, (why.splitlines()[0] if why else type(exc).__name__)
    finally:
        lock.release()


def _count(summary: Summary, part: Partition, status: str, rows: int, error: str) -> None:
    if status == "done":
        summary.done += 1
        summary.rows += rows
    elif status == "up to date":
        summary.up_to_date += 1
    elif status == "locked":
        summary.locked += 1
    else:
        summary.failed.append((part.rel, error))


def run(
    parts: list[Partition],
    out_root: str | Path,
    key: str,
    work: Work,
    on_partition: Callable[[Partition, str], None] | None = None,
) -> Summary:
    """Run `work(partition, output, metadata) -> rows` for every partition not up to date.

    `work` must write `output` atomically and put `metadata` in it. A partition that fails
    is counted with its first error and the run goes on with the rest."""
    summary = Summary(total=len(parts))
    t0 = time.perf_counter()
    for part in parts:
        status, rows, error = process(part, Path(out_root), key, work)
        _count(summary, part, status, rows, error)
        _note(on_partition, part, status)
    summary.seconds = time.perf_counter() - t0
    return summary


def run_distributed(
    parts: list[Partition],
    out_root: str | Path,
    key: str,
    work: Work,
    client: Any,
    on_partition: Callable[[Partition, str], None] | None = None,
) -> Summary:
    """`run` with one dask.distributed task per partition (`work` must pickle). Up-to-date
    partitions are skipped here, without a task; a partition whose workers kept dying
    (KilledWorker, after dask's own retries elsewhere) is counted as failed, for a rerun."""
    from distributed import as_completed

    out_root = Path(out_root)
    summary = Summary(total=len(parts))
    t0 = time.perf_counter()
    todo = []
    for part in parts:
        if up_to_date(part, output_path(part, out_root), key):
            _count(summary, part, "up to date", 0, "")
            _note(on_partition, part, "up to date")
        else:
            todo.append(part)
    # as many tasks in flight as the workers have threads: a worker that dies takes only the
    # partition it was running with it, never a queue of others
    window = max(1, sum(client.nthreads().values()))
    futures: dict = {}

    def submit(part: Partition):
        fut = client.submit(process, part, out_root, key, work, key=f"pz-{key[:8]}-{part.rel}")
        futures[fut] = part
        return fut

    queue = iter(todo)
    running = as_completed([submit(p) for p in itertools.islice(queue, window)])
    for fut in running:
        part = futures.pop(fut)
        try:
            status, rows, error = fut.result()
        except Exception as exc:  # KilledWorker, or a worker lost for good
            status, rows = "failed", 0
            if type(exc).__name__ == "KilledWorker":
                error = "KilledWorker: the workers running it died; rerun to finish it"
                Lock(output_path(part, out_root)).clear_if_abandoned()
            else:
                first = str(exc).splitlines()[0] if str(exc) else ""
                error = f"{type(exc).__name__}: {first}; rerun to finish it"
        _count(summary, part, status, rows, error)
        _note(on_partition, part, status)
        nxt = next(queue, None)
        if nxt is not None:
            running.add(submit(nxt))
    summary.seconds = time.perf_counter() - t0
    return summary


def run_on(
    scheduler: str | int | None,
    parts: list[Partition],
    out_root: str | Path,
    key: str,
    work: Work,
    on_partition: Callable[[Partition, str], None] | None = None,
) -> Summary:
    """`run` in this process (no scheduler) or `run_distributed` on the Dask scheduler given as
    parse_scheduler returns it (an address, or a number of local worker processes)."""
    if scheduler is None:
        return run(parts, out_root, key, work, on_partition=on_partition)
    with dask_client(scheduler) as client:
        return run_distributed(parts, out_root, key, work, client, on_partition=on_partition)


# --------------------------------------------------------------------------- HATS out

HATS_COPIED = ("partition_info.csv", "point_map.fits", "skymap.fits")  # the same pixels and rows


def finish_hats(source: str | Path, out_root: str | Path, key: str, summary: Summary) -> bool:
    """Describe the output folder as a HATS catalogue (or collection) when the input is one and
    every input partition's output is in place and current: properties from the input's (same
    pixels, same rows; builder and date ours), its partition_info and sky maps, and
    ``dataset/_common_metadata`` and ``_metadata`` written by hats from our files, so that
    lsdb.open_catalog reads pz-predict's output. A shard run leaves it to the last shard to
    finish; a rerun with nothing to do leaves it untouched. Returns True when written."""
    source, out_root = Path(source), Path(out_root)
    if not _is_hats(source) or summary.failed:
        return False
    import hats
    from hats.io import write_parquet_metadata

    from photoz_tools import __version__

    found = hats.read_hats(source)
    main = getattr(found, "main_catalog", found)
    rel = Path(str(main.catalog_base_dir)).relative_to(source.resolve())
    dest = out_root / rel
    if summary.done == 0 and (dest / "hats.properties").is_file():
        return False
    if not all(up_to_date(p, output_path(p, out_root), key) for p in discover(source)):
        return False
    lock = Lock(dest / "hats.properties")
    if not lock.acquire():
        return False  # another run is writing it
    try:
        for name in HATS_COPIED:
            if (Path(str(main.catalog_base_dir)) / name).is_file():
                tmp = dest / f".{name}.tmp"
                shutil.copyfile(Path(str(main.catalog_base_dir)) / name, tmp)
                os.replace(tmp, dest / name)
        made = time.strftime("%Y-%m-%dT%H:%MUTC", time.gmtime())
        builder = f"photoz-tools {__version__} (pz-predict), hats v{hats.__version__}"
        main.catalog_info.copy_and_update(
            hats_builder=builder, hats_creation_date=made, hats_estsize=None
        ).to_properties_file(dest)
        write_parquet_metadata(dest)
        if hasattr(found, "collection_properties"):  # our output has no margin catalogue
            found.collection_properties.model_copy(
                update={
                    "all_margins": None,
                    "default_margin": None,
                    "hats_builder": builder,
                    "hats_creation_date": made,
                    "hats_estsize": None,
                }
            ).to_properties_file(out_root)
    finally:
        lock.release()
    return True


def _note(cb: Callable[[Partition, str], None] | None, part: Partition, what: str) -> None:
    if cb is not None:
        cb(part, what)
