#!/usr/bin/env bash
# The photoz-tools pipeline end to end on a simulated SDSS survey, as plain shell commands.
# Same steps as `make demo` (python -m photoz_tools.demo); no network, no ../shared data.
#
#   examples/demo.sh                  # writes demo-output/
#   OUT=/tmp/pz N=1000 EPOCHS=4 examples/demo.sh
#
# Needs the pz-* commands on PATH (pip install 'photoz-tools[cnn,sdss,mock]'), or a checkout
# with its .venv (bin/ launchers are used then).
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HERE/bin:$PATH"
PYTHON="${PYTHON:-$([ -x "$HERE/.venv/bin/python" ] && echo "$HERE/.venv/bin/python" || echo python3)}"
OUT="${OUT:-demo-output}"
N="${N:-2500}"          # galaxies to simulate
EPOCHS="${EPOCHS:-12}"  # training epochs of the small CNN
SEED="${SEED:-1}"
mkdir -p "$OUT"

# 1. a simulated survey: catalogue, frame index, SDSS corrected frames in the SAS layout
pz-mock -n "$N" --seed "$SEED" --deep-fraction 0.1 --epochs 3 --per-field 300 -o "$OUT/mock"

# 2. serve it as SkyServer + SAS on 127.0.0.1 (the URLs come on the server's stdout)
pz-mock serve "$OUT/mock" --port 0 -q > "$OUT/serve.txt" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ "$(wc -l < "$OUT/serve.txt")" -ge 2 ] && break; sleep 0.2; done
URL="$(awk '$1 == "skyserver" {print $2}' "$OUT/serve.txt")"
SAS="$(awk '$1 == "sas" {print $2}' "$OUT/serve.txt")"

# 3. the Main Galaxy Sample query, the frames under it, 64x64 ugriz cutouts from the SAS
pz-query --url "$URL" -o "$OUT/mgs.parquet"
pz-query frames "$OUT/mgs.parquet" --url "$URL" -o "$OUT/frames.parquet"
pz-cutout "$OUT/mgs.parquet" --frame-index "$OUT/frames.parquet" --sas-url "$SAS" \
  --cache "$OUT/sas-cache" -o "$OUT/cutouts.parquet" --preview "$OUT/cutouts.png"
kill "$SERVER"

# 4. folds (fold 0 is the test set), the small CNN, predictions on the held-out fold, scores
pz-pack "$OUT/cutouts.parquet" -c "$OUT/mgs.parquet" --folds 5 --seed 0 -o "$OUT/dataset.parquet"
pz-train "$OUT/dataset.parquet" -o "$OUT/model" --arch small --fold 0 --epochs "$EPOCHS" \
  --batch-size 64 --lr 1e-3 --seed "$SEED" --force
"$PYTHON" - "$OUT" <<'PY'
import sys, pyarrow.compute as pc, pyarrow.parquet as pq
t = pq.read_table(f"{sys.argv[1]}/dataset.parquet")
pq.write_table(t.filter(pc.equal(t["split"], "test")), f"{sys.argv[1]}/test.parquet")
PY
pz-predict -m "$OUT/model" "$OUT/test.parquet" -o "$OUT/zphot.parquet"
pz-score "$OUT/zphot.parquet" --truth z --zphot zphot,zphot_b16 --plot "$OUT/scores.png" \
  -o "$OUT/scores.csv"
echo "figure: $OUT/scores.png"
