#!/usr/bin/env bash
# The authors' trained network on the authors' example galaxies, as their test.py does it:
#   their pretrained_model zip -> pz-import -> bundle; data_example.npz -> pz-pack -> pz-predict
#   -> pz-score (bias, sigma_MAD, eta, CRPS against the spectroscopic z)
#
# THE FILES. jpasquet/Photoz's pretrained_model/README.md links the zipped `pretrained_model/`
# folder from their institute (https://projets.lam.fr/dmsf/files/16143/view) and a public drive
# folder (https://drive.google.com/drive/folders/19QjIaJcbe7btlUDTHUWxC64-aEQk4r9Q). Both pages
# are for a browser: copy the direct download link of the zip (or download it yourself) and give
# it, with their example file data/data_example.npz (N x 64 x 64 x 5 `data`, `z`, `ebv`):
#     AUTHORS_ZIP_URL='https://...' EXAMPLE_NPZ_URL='https://...' examples/authors_model.sh
# or AUTHORS_ZIP=/path/to/pretrained_model.zip EXAMPLE_NPZ=/path/to/data_example.npz.
# Optionally AUTHORS_ZIP_SHA256=<hex> to check the download.
#
# Prediction with the one network: ~1.5 GFLOP a galaxy, ~20-200 galaxies/s on a CPU.
# Every step skips work already done, so the script can be rerun after an interruption.
set -euo pipefail

WORK=${WORK:-authors-model}
AUTHORS_ZIP=${AUTHORS_ZIP:-$WORK/pretrained_model.zip}
AUTHORS_ZIP_URL=${AUTHORS_ZIP_URL:-}
AUTHORS_ZIP_SHA256=${AUTHORS_ZIP_SHA256:-}
EXAMPLE_NPZ=${EXAMPLE_NPZ:-$WORK/data_example.npz}
EXAMPLE_NPZ_URL=${EXAMPLE_NPZ_URL:-}
PREDICT_OPTS=${PREDICT_OPTS:-}            # e.g. --precision bfloat16 on a CPU with AMX

here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$here/bin:$PATH"             # the checkout's commands when not installed
mkdir -p "$WORK"

fetch() {  # fetch URL FILE: download atomically (a killed download leaves no half file)
  local url=$1 file=$2
  [ -s "$file" ] && return 0
  if [ -z "$url" ]; then
    echo "authors_model.sh: $file is absent; set its URL (see the comment at the top)" >&2
    exit 1
  fi
  echo "downloading $url -> $file" >&2
  curl -fL --retry 3 --retry-delay 5 -o "$file.part" "$url"
  mv "$file.part" "$file"
}

fetch "$AUTHORS_ZIP_URL" "$AUTHORS_ZIP"
if [ -n "$AUTHORS_ZIP_SHA256" ]; then
  echo "$AUTHORS_ZIP_SHA256  $AUTHORS_ZIP" | sha256sum -c - >&2
fi
fetch "$EXAMPLE_NPZ_URL" "$EXAMPLE_NPZ"

[ -d "$WORK/authors" ] || pz-import "$AUTHORS_ZIP" -o "$WORK/authors"
[ -s "$WORK/example.parquet" ] || pz-pack "$EXAMPLE_NPZ" --keep-order -o "$WORK/example.parquet"
[ -s "$WORK/zphot.parquet" ] ||
  pz-predict -m "$WORK/authors" "$WORK/example.parquet" $PREDICT_OPTS -o "$WORK/zphot.parquet"
pz-score "$WORK/zphot.parquet" --truth z | tee "$WORK/scores.txt"
