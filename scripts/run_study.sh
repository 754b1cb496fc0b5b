#!/usr/bin/env bash
# Runs the plain-vs-residual study end to end: trains (or resumes) every run,
# evaluates each on the whole test set, writes the report.
#
#   scripts/run_study.sh --data_dir=~/data/cifar10 --out=runs/study        # full: 200 epochs
#   scripts/run_study.sh --flagfile=flags/study/three_passes.cfg --data_dir=~/data/cifar10 \
#       --out=runs/three_passes --report_dir=docs/study                   # docs/study: 3 passes
#   scripts/run_study.sh --quick --depth_sweep --seeds=0,1,2 --data_dir=~/data/cifar10 --out=runs/quick
#
# Every flag goes to python -m keras_resnet_cifar.study (see its --help). The Python
# is $PYTHON, else this checkout's .venv/bin/python, else python3 on PATH
# (scripts/project_python.sh). Interrupted? Run the same command again: it resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/project_python.sh
exec "$PYTHON" -m keras_resnet_cifar.study "$@"
