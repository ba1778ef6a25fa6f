#!/usr/bin/env bash
# Reproduce Pasquet et al. 2019 (A&A 621, A26), Tables 1 and 2, from the authors' published data:
#   sdss.npz -> pz-pack (MGS cut, 5 folds) -> pz-train (6 members per fold) -> pz-predict -> pz-score
#
# THE DATA. The authors publish their 659,857 SDSS cutouts and labels as `sdss.npz` on their
# institute's data site, deepdip.iap.fr, on the page "Processed images and spectroscopic redshifts
# from Pasquet et al. 2019". We do not hard-code a download address we could not verify: open that
# page, copy the link of sdss.npz, and set it:
#     SDSS_NPZ_URL='https://...' examples/reproduce_pasquet2019.sh
# or download it yourself and set SDSS_NPZ=/path/to/sdss.npz. Optionally SDSS_NPZ_SHA256=<hex>.
#
# THE COMPUTE (stated so you can plan it):
#   - 30 models: 5 folds x 6 ensemble members, each trained for the paper's 120k iterations of 128
#     galaxies (~30 epochs of ~400k). The paper: 0.21 s per batch on one GTX Titan X, ~7 h per model,
#     so ~210 GPU-hours (~9 GPU-days) on Titan X-class GPUs; a recent data-centre GPU is several
#     times faster. On a CPU it is out of reach (measured here: 13-24 galaxies/s, ~2-4 months per
#     model on 2 cores). Members and folds are independent: run them on as many GPUs as you have
#     (set FOLDS_TO_RUN / run several copies of this script with different FOLDS_TO_RUN).
#   - Prediction: ~516k galaxies x 6 members, ~1.5 GFLOP each per member: minutes on a GPU.
#   - Disk: sdss.npz 54 GB; the packed dataset ~43 GB (516k galaxies x 80 kB); one test fold at a
#     time ~9 GB (deleted after prediction); predictions with 180-bin PDFs ~0.4 GB. Plan ~110 GB.
#   - Memory: every step streams in batches; a few GB of RAM suffice.
#
# A SMOKE RUN of the same commands on a small file (tests/pack/test_reproduce_script.py does this):
#     FOLDS=2 MEMBERS=1 TRAIN_OPTS='--arch tiny --steps 1' SDSS_NPZ=small.npz \
#         examples/reproduce_pasquet2019.sh
#
# Every step skips work already done, so the script can be rerun after an interruption
# (pz-train itself resumes from its last checkpoint).
set -euo pipefail

WORK=${WORK:-pasquet2019}                 # everything goes here
SDSS_NPZ=${SDSS_NPZ:-$WORK/sdss.npz}      # the authors' file (downloaded if absent)
SDSS_NPZ_URL=${SDSS_NPZ_URL:-}            # its address, from the deepdip.iap.fr page named above
SDSS_NPZ_SHA256=${SDSS_NPZ_SHA256:-}      # optional checksum of the download
FOLDS=${FOLDS:-5}                         # the paper's 5-fold cross-validation
MEMBERS=${MEMBERS:-6}                     # the paper's ensemble of 6 initialisations
SEED=${SEED:-0}
VALIDATION=${VALIDATION:-25000}           # 4/5 of it (20,000, the paper's) outside each test fold
ALL_FOLDS=$(seq -s " " 0 $((FOLDS - 1)))  # 0 1 2 3 4
FOLDS_TO_RUN=${FOLDS_TO_RUN:-$ALL_FOLDS}  # a subset, to spread folds over machines
TRAIN_OPTS=${TRAIN_OPTS:-}                # extra pz-train options (e.g. --arch, --steps)
PREDICT_OPTS=${PREDICT_OPTS:-}            # extra pz-predict options (e.g. --batch-size)
PACK_OPTS=${PACK_OPTS:-}                  # extra pz-pack options (e.g. --label-map OLD=NEW)
PYTHON=${PYTHON:-python3}

mkdir -p "$WORK"
say() { printf '\n== %s\n' "$*" >&2; }

# --- 1. the data --------------------------------------------------------------------------------
if [[ ! -s $SDSS_NPZ ]]; then
  if [[ -z $SDSS_NPZ_URL ]]; then
    echo "reproduce: $SDSS_NPZ not found. Set SDSS_NPZ_URL to the sdss.npz link on deepdip.iap.fr" \
         "('Processed images and spectroscopic redshifts from Pasquet et al. 2019')," \
         "or SDSS_NPZ to a copy you already have." >&2
    exit 1
  fi
  say "downloading sdss.npz (54 GB; resumable: rerun to continue)"
  curl -fL --retry 5 -C - -o "$SDSS_NPZ.part" "$SDSS_NPZ_URL"
  if [[ -n $SDSS_NPZ_SHA256 ]]; then
    echo "$SDSS_NPZ_SHA256  $SDSS_NPZ.part" | sha256sum -c - >&2
  fi
  mv "$SDSS_NPZ.part" "$SDSS_NPZ"
fi

# --- 2. pack: the MGS cut (dered_petro_r <= 17.8, z <= 0.4, primtarget >= 64), 5 folds ------------
# The cube is streamed from the zip, never loaded whole. Folds are seeded and stratified in z.
# --test-fold none: every fold is the test set in turn (pz-train --fold k holds fold k out), so
# no fold is marked test here. --validation 25000 (VALIDATION): drawn over all folds, so that
# pz-train --fold k monitors the 4/5 of them outside fold k: the paper's 20,000 galaxies.
# The labels' 64 names are read from the file: $WORK/labels.tsv lists them with the output column
# each becomes (EBV -> ebv, zphot -> zphot_b16 by default). If the Beck et al. photo-z or the cut
# columns go by other names, map them: PACK_OPTS='--label-map theirname=zphot_b16'.
DATASET=$WORK/dataset.parquet
if [[ ! -s $DATASET ]]; then
  # shellcheck disable=SC2086
  pz-pack "$SDSS_NPZ" --list-labels $PACK_OPTS > "$WORK/labels.tsv"
  say "pz-pack: $SDSS_NPZ -> $DATASET (labels: $WORK/labels.tsv)"
  # shellcheck disable=SC2086
  pz-pack "$SDSS_NPZ" --mgs-cut --folds "$FOLDS" --seed "$SEED" --test-fold none \
    --validation "$VALIDATION" $PACK_OPTS \
    -o "$DATASET"
fi

# rows of one fold, streamed (pz-predict reads whole tables; this keeps each run to the test fold)
select_fold() {  # select_fold DATASET K OUT
  "$PYTHON" - "$@" <<'PY'
import sys
import pyarrow.dataset as ds
import pyarrow.parquet as pq
src, k, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
d = ds.dataset(src, format="parquet")
with pq.ParquetWriter(out + ".tmp", d.schema) as w:
    for b in d.to_batches(filter=ds.field("fold") == k, batch_size=1024):
        if b.num_rows:
            w.write_batch(b)
import os; os.replace(out + ".tmp", out)
PY
}

# --- 3-4. per fold: train the ensemble on the other four folds, predict the held-out fold --------
for k in $FOLDS_TO_RUN; do
  MODEL=$WORK/model-fold$k
  PRED=$WORK/pred-fold$k.parquet
  [[ -s $PRED ]] && continue
  say "pz-train: fold $k held out, $MEMBERS members"
  # shellcheck disable=SC2086
  pz-train "$DATASET" --fold "$k" --members "$MEMBERS" --seed "$SEED" -o "$MODEL" $TRAIN_OPTS
  say "pz-predict: fold $k"
  select_fold "$DATASET" "$k" "$WORK/test-fold$k.parquet"
  # shellcheck disable=SC2086
  pz-predict -m "$MODEL" "$WORK/test-fold$k.parquet" -o "$PRED" $PREDICT_OPTS
  rm -f "$WORK/test-fold$k.parquet"
done

PREDS=()
for k in $ALL_FOLDS; do
  PREDS+=("$WORK/pred-fold$k.parquet")
  if [[ ! -s $WORK/pred-fold$k.parquet ]]; then
    echo "reproduce: fold $k not predicted yet; rerun when every fold is done" >&2
    exit 0
  fi
done

# --- 5. score: Table 1 (per fold, mean and standard deviation) and Table 2 ----------------------
PRED=$WORK/predictions.parquet
"$PYTHON" - "$PRED" "${PREDS[@]}" <<'PY'
import sys
import pyarrow.parquet as pq
out, parts = sys.argv[1], sys.argv[2:]
schema = pq.read_schema(parts[0])
with pq.ParquetWriter(out, schema) as w:
    for p in parts:
        for b in pq.ParquetFile(p).iter_batches(65536):
            w.write_batch(b)
PY
say "Table 1: per-fold statistics (paper: sigma_MAD ~0.0091, eta ~0.3 %)"
pz-score "$PRED" --truth z --group fold -o "$WORK/table1.csv"
say "Table 2: all, and without the 10 % and 20 % widest PDFs; CNN beside Beck et al. 2016"
pz-score "$PRED" --truth z --zphot zphot,zphot_b16 --drop-widest 10,20 -o "$WORK/table2.csv"
say "figures: zphot vs zspec, dz, PIT"
pz-score "$PRED" --truth z --plot "$WORK/scores.png" -o "$WORK/all.csv"
cat >&2 <<TXT

Paper, Table 2 (400k training galaxies, 6 models, 5 folds): bias 0.00010, sigma_MAD 0.00912,
eta 0.31 %, CRPS 0.00674; Beck et al. 2016 on the same galaxies: sigma_MAD 0.01350, eta 1.34 %.
Yours: $WORK/table1.csv, $WORK/table2.csv, $WORK/scores.png
TXT
