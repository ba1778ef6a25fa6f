#!/usr/bin/env bash
# The larger mock benchmark of issue 5: does the CNN beat a photometry-only kNN when it has tens of
# thousands of training galaxies?  The 10,000 real MGS rows are split BEFORE rendering (the shared
# SDSS_MGS.train / SDSS_MGS.test halves, 5,000 each); every training row is rendered REPEAT times
# (new shape, size draw, inclination, E(B-V), position, noise), every test row once, on a sky of
# its own with another seed, so no test galaxy's photometry is ever trained on.
# Since issue 12 each row keeps its z while its intrinsic ugriz is drawn from the deconvolved model
# given z and its measured r, and the catalogues' dered_petro_* / petroMagErr_* are Petrosian
# photometry measured from the rendered frames (true_mag_*, r50_true hold the truth), so the
# baselines of step 4 read a measured catalogue and the oracles the truth.
#
# Resumable: every step is skipped when its output exists, pz-mock keeps the frames it wrote,
# pz-cutout resumes from OUTPUT.partial/ and pz-train from its checkpoints.  Rerun after a kill.
#
# Run:  benchmarks/mock_large.sh [OUT]        (default benchmarks/out/large)
# Knobs (environment): REPEAT=5 EPOCHS=14 LR=1e-3 BATCH=64 ARCH=small JOBS=2 PER_FIELD=300
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/benchmarks/out/large}
phot=${PZ_MGS_PHOTOMETRY:-$here/../shared/data/mgs-photometry}
REPEAT=${REPEAT:-5} EPOCHS=${EPOCHS:-14} LR=${LR:-1e-3} BATCH=${BATCH:-64}
ARCH=${ARCH:-small} JOBS=${JOBS:-2} PER_FIELD=${PER_FIELD:-300}
PATH=$here/.venv/bin:$PATH
export TF_CPP_MIN_LOG_LEVEL=3

if [[ ! -r $phot/SDSS_MGS.train || ! -r $phot/SDSS_MGS.test ]]; then
    echo "mock_large.sh: error: $phot/SDSS_MGS.{train,test} not found (set PZ_MGS_PHOTOMETRY)" >&2
    exit 1
fi
mkdir -p "$out"
log() { printf '%s mock_large: %s\n' "$(date -u +%FT%TZ)" "$*" | tee -a "$out/steps.log" >&2; }
step() {  # step OUTPUT COMMAND...: run unless OUTPUT exists; log its wall and CPU time
    local target=$1; shift
    if [[ -e $target ]]; then log "have $target"; return; fi
    log "$*"
    local t0=$SECONDS
    /usr/bin/time -f "%e s wall, %U s user, %S s sys, %M kB peak RSS" -a -o "$out/steps.log" "$@"
    log "done in $((SECONDS - t0)) s: $target"
}

# 1. Two skies: the training rows REPEAT times, the test rows once (plain .fits: pz-cutout --frames).
step "$out/train-sky/catalog.parquet.done" bash -c "pz-mock --photometry '$phot/SDSS_MGS.train' \
    --repeat $REPEAT --seed 11 --per-field $PER_FIELD --no-compress -j $JOBS -q -o '$out/train-sky' \
    && touch '$out/train-sky/catalog.parquet.done'"
step "$out/test-sky/catalog.parquet.done" bash -c "pz-mock --photometry '$phot/SDSS_MGS.test' \
    --seed 12 --per-field $PER_FIELD --no-compress -j $JOBS -q -o '$out/test-sky' \
    && touch '$out/test-sky/catalog.parquet.done'"

# 2. Cutouts straight from the frames, then datasets: all training rows train (5 % drawn for
#    validation), all test rows are the held-out set.
for sky in train test; do
    step "$out/$sky-cutouts.parquet" pz-cutout "$out/$sky-sky/catalog.parquet" \
        --frames "$out/$sky-sky/frames" -j "$JOBS" -q -o "$out/$sky-cutouts.parquet"
done
step "$out/train.parquet" pz-pack "$out/train-cutouts.parquet" -c "$out/train-sky/catalog.parquet" \
    --test-fold none --validation 0.05 --seed 0 -q -o "$out/train.parquet"
step "$out/test.parquet" pz-pack "$out/test-cutouts.parquet" -c "$out/test-sky/catalog.parquet" \
    --test-fold none --validation 0 --seed 0 -q -o "$out/test.parquet"

# 3. The small CNN (resumes from its checkpoints when killed), then predict the test sky.
step "$out/model/manifest.json" pz-train "$out/train.parquet" -o "$out/model" --arch "$ARCH" \
    --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" --seed 1
step "$out/zphot.parquet" pz-predict -m "$out/model" "$out/test.parquet" -o "$out/zphot.parquet"

# 4. Scores: the CNN beside the kNN baselines on the same 5,000 held-out galaxies.
pz-score "$out/zphot.parquet" --truth z --zphot zphot -o "$out/scores.csv" \
    --plot "$out/scores.png" | tee "$out/scores.txt"
python "$here/benchmarks/mock_knn.py" --train "$out/train.parquet" --test "$out/test.parquet" \
    --pred "$out/zphot.parquet" | tee "$out/knn.txt"
log "figure: $out/scores.png"
