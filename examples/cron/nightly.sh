#!/usr/bin/env bash
# Nightly photo-z over a growing partitioned catalogue: each night's new partitions (and any
# whose input changed, or that a new model bundle makes stale) are predicted; everything else is
# skipped as up to date, so the run costs seconds when there is nothing new. Safe to start twice
# (a lock per output partition) and after a crash (no partial file; rerun finishes the rest).
#
#   CATALOGUE  input folder of Parquet partitions (plain, hive-style night=YYYYMMDD/, or HATS)
#   ZPHOT      output folder: the same relative paths, one zphot file per input partition
#   MODEL      the model bundle (pz-train or pz-import); its hash is part of "up to date"
#   SHARD      optional I/N to split the partitions over N array jobs (Slurm, HTCondor)
#
# Crontab line (02:30 every night, one line of summary per run appended to the log):
#   30 2 * * * CATALOGUE=/data/survey/catalogue ZPHOT=/data/survey/zphot MODEL=/data/models/pasquet2019 /opt/photoz-tools/examples/cron/nightly.sh >> /data/survey/logs/photoz.log 2>&1
set -uo pipefail

: "${CATALOGUE:?set CATALOGUE}" "${ZPHOT:?set ZPHOT}" "${MODEL:?set MODEL}"
here=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$here/bin:$PATH"
shard=()
[ -n "${SHARD:-}" ] && shard=(--shard "$SHARD")

echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) pz-predict $CATALOGUE -> $ZPHOT"
pz-predict -m "$MODEL" "$CATALOGUE" -o "$ZPHOT" "${shard[@]}"
status=$?
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) exit $status"
exit $status
