"""Fixtures shared by every test folder: the real data in ../shared/data, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# shared test helpers (framekit) importable from every test folder (importlib import mode)
sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PZ_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real SDSS frames, MGS photometry, published predictions), or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real SDSS data not found at {SHARED_DATA} (../shared/data is absent)")
    return SHARED_DATA


def run_cli(
    command: str,
    *args: str,
    input: bytes | None = None,
    env: dict | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run a pz-* command as a user would (a real subprocess), capturing bytes."""
    from photoz_tools.cli.manpages import module_name

    module = module_name(command.removeprefix("pz-"))
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        input=input,
        capture_output=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    """`cli("pz-score", "p.parquet", "--truth", "z")` -> CompletedProcess (bytes output)."""
    return run_cli
