#!/usr/bin/env bash
# Runs the plain-vs-residual study end to end: trains (or resumes) every run,
# evaluates each on the whole test set, writes the report.
#
#   scripts/run_study.sh --data_dir=~/cifar10 --out=runs/study              # full: 200 epochs
#   scripts/run_study.sh --flagfile=flags/study_cpu.cfg --data_dir=... --out=...  # ~1 h on a CPU
#   scripts/run_study.sh --quick --data_dir=... --depth_sweep --seeds=0,1,2
#
# Every flag goes to python -m keras_resnet_cifar.study (see its --help).
# Interrupted? Run the same command again: it resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m keras_resnet_cifar.study "$@"
