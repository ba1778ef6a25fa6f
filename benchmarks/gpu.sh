#!/usr/bin/env bash
# One command for a GPU host (issue 9, "Measure"): the paper network's training and prediction
# galaxies/s in float32 and bfloat16, the training feed alone, the matmul peaks and MFU, in under
# 8 minutes on an H100/H200. Run from the repository root:
#
#     bash benchmarks/gpu.sh [gpu_bench.py options, e.g. --budget 420 | --quick]
#
# The host needs Python 3 with JAX (CUDA), numpy, pyarrow, scipy, rich, typer, matplotlib; it
# need not have TensorFlow, Keras, astropy or fitsio. Keras and its pure-python requirements the
# host lacks (namex, optree, typing_extensions) come as wheels in .whl/ (git-ignored: carry it,
# e.g. the device tool's carry [".whl"]); they are installed into /tmp/site, nothing else is
# touched. Prepare .whl/ on a machine with network access (see benchmarks/precision.md).
#
# Prints one JSON object and a table on stdout (progress on stderr); with $OUT set, writes
# $OUT/gpu.json (after every part) and $OUT/gpu.log (the whole output).
# PYTHON (default python3) picks the interpreter; GPU_BENCH_TIMEOUT (default 450 s, then KILL 15 s later) is the hard
# cap on the Python run; the script's own --budget (default 420 s) skips parts that would not fit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export KERAS_BACKEND=jax
export TF_CPP_MIN_LOG_LEVEL=3
shopt -s nullglob
wheels=(.whl/*.whl)
if ((${#wheels[@]})); then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "${wheels[@]}"
    export PYTHONPATH=/tmp/site:$PWD
else
    echo "gpu.sh: no wheels in .whl/ (not carried?); using the interpreter's own keras" >&2
    export PYTHONPATH=$PWD
fi
"$PY" -c 'import keras, jax; print(f"gpu.sh: keras {keras.__version__} ({keras.backend.backend()}), jax {jax.__version__}, devices {jax.devices()}")' >&2
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    timeout -s INT -k 15 "${GPU_BENCH_TIMEOUT:-450}" "$PY" benchmarks/gpu_bench.py "$@" 2>&1 | tee "$OUT/gpu.log"
    exit "${PIPESTATUS[0]}"
fi
exec timeout -s INT -k 15 "${GPU_BENCH_TIMEOUT:-450}" "$PY" benchmarks/gpu_bench.py "$@"
