#!/usr/bin/env bash
# Table 1 at the full default recipe (200 epochs), the four networks one after another,
# each with the command the README prints, then `evaluate` (per-class accuracy, confusion
# matrix). Run it again after any stop: a finished network is skipped, an unfinished one
# resumes from its last completed epoch (the resume is exact), a missing one starts.
#
#   scripts/full_recipe.sh OUT_DIR DATA_DIR [NET ...]     # default nets: Table 1's four
#   nice -n 19 scripts/full_recipe.sh ~/table1/runs ~/data/cifar10 &
#
# Each network's output goes to OUT_DIR/<net>.log; run folders are OUT_DIR/<net>-seed0.
# The script stops at the first network that did not finish (Ctrl-C, a kill, an error),
# so the next call resumes it rather than starting the next one.
set -uo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then  # the comment above, without its "# "
  sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0
fi
[[ $# -ge 2 ]] || { echo "usage: $0 OUT_DIR DATA_DIR [NET ...]" >&2; exit 2; }
out=$1 data=$2; shift 2
nets=("$@"); [[ ${#nets[@]} -gt 0 ]] || nets=(resnet20 plain20 resnet56 plain56)
cd "$(dirname "$0")/.."
source scripts/project_python.sh
mkdir -p "$out"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
for net in "${nets[@]}"; do
  dir=$out/$net-seed0 log=$out/$net.log
  stamp() { echo "=== $(date -u +%FT%TZ) $* (code $commit, load $(cut -d' ' -f1-3 /proc/loadavg)) ===" >> "$log"; }
  if [[ ! -f $dir/metrics.json ]]; then
    stamp "train $net"
    "$PYTHON" -m keras_resnet_cifar.train --flagfile="flags/$net.cfg" --data_dir="$data" \
      --model_dir="$dir" >> "$log" 2>&1
    rc=$?
    stamp "train $net exit $rc"
    [[ -f $dir/metrics.json ]] || { echo "$net stopped before its last epoch (exit $rc): run this again to resume" >&2; exit 1; }
  fi
  if [[ ! -f $dir/evaluation.json ]]; then
    "$PYTHON" -m keras_resnet_cifar.evaluate --model_path="$dir" --data_dir="$data" >> "$log" 2>&1
    rc=$?
    stamp "evaluate $net exit $rc"
    [[ $rc -eq 0 ]] || { echo "$net: evaluate failed (exit $rc), see $log" >&2; exit 1; }
  fi
done
