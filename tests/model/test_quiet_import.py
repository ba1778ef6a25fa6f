"""TensorFlow's C++ start-up lines are written to file descriptor 2 before absl's logging is set
up, past TF_CPP_MIN_LOG_LEVEL (on Intel CPUs with oneDNN's custom ops: the absl notice and
port.cc's oneDNN line). The silencer must drop exactly that chatter, keep real errors, and pass
everything on when the import fails. The chatter is written here at the C level (os.write on
fd 2) so the test means the same on every CPU kind."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHATTER = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n"
    "I0000 00:00:1764553200.123456   12345 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results due to floating-point round-off errors "
    "from different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.\\n"
    "I0000 00:00:1764553200.2   12345 cpu_feature_guard.cc:210] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.\\n"
    "To enable the following instructions: AVX512_FP16 AMX_TILE, in other operations, "
    "rebuild TensorFlow with the appropriate compiler flags.\\n"
)


def _run(body: str) -> subprocess.CompletedProcess:
    code = "import os, sys\nfrom photoz_tools.model.backend import quiet_fd2\n" + textwrap.dedent(
        body
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_start_up_chatter_is_dropped_and_real_errors_kept():
    r = _run(
        f"""
        with quiet_fd2():
            os.write(2, b"{CHATTER}")
            os.write(2, b"E0000 00:00:1.5  1 cuda_dnn.cc:8310] a real error\\n")
            print("python's own warning", file=sys.stderr)
        print("stdout untouched")
        print("stderr works again", file=sys.stderr)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "stdout untouched\n"
    lines = r.stderr.splitlines()
    assert lines == [
        "E0000 00:00:1.5  1 cuda_dnn.cc:8310] a real error",
        "python's own warning",
        "stderr works again",
    ], r.stderr


def test_everything_is_passed_on_when_the_import_fails():
    r = _run(
        f"""
        try:
            with quiet_fd2():
                os.write(2, b"{CHATTER}")
                raise ImportError("libfoo.so: cannot open shared object file")
        except ImportError as exc:
            print("caught", exc, file=sys.stderr)
        """
    )
    assert "oneDNN custom operations are on" in r.stderr
    assert r.stderr.rstrip().endswith("caught libfoo.so: cannot open shared object file")


def test_importing_the_model_code_prints_nothing():
    """The real import, through the package's one entry point (silent on every CPU kind)."""
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import photoz_tools.model.architecture as a, photoz_tools.model.train;"
            "a.build_model(a.load_config('tiny'))(dict(image=a.ops.zeros((1, 64, 64, 5)),"
            " ebv=a.ops.zeros((1, 1))))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
