#!/usr/bin/env bash
# Multi-worker training (tf.distribute.MultiWorkerMirroredStrategy) driven by TF_CONFIG.
#
# On N machines: run this once on each machine, with the same --workers list (every
# worker's host:port, in the same order) and that machine's own --index (0..N-1).
# Worker 0 is the chief: it alone writes --model_dir (config, history, checkpoints,
# TensorBoard logs, model.keras, metrics.json); worker i>0 keeps its own state in
# <model_dir>/workertemp_<i>/. Everything after "--" goes to keras_resnet_cifar.train.
#
#   machine A:  scripts/launch_multiworker.sh --workers=10.0.0.1:12345,10.0.0.2:12345 --index=0 \
#                   -- --flagfile=flags/resnet56.cfg --data_dir=/data/cifar10 --model_dir=/shared/runs/r56
#   machine B:  scripts/launch_multiworker.sh --workers=10.0.0.1:12345,10.0.0.2:12345 --index=1 \
#                   -- --flagfile=flags/resnet56.cfg --data_dir=/data/cifar10 --model_dir=/shared/runs/r56
#
# --batch_size is the global batch: it is split evenly over all replicas (each worker
# contributes one replica per local GPU, or one for its CPU), so the recipe (batch 128,
# learning rate 0.1) does not change with the cluster. A worker uses every GPU it sees;
# set CUDA_VISIBLE_DEVICES to choose. Every worker reads the whole data set and keeps
# its part of each global batch.
#
# Resuming: if any worker dies, the others stop with an error. Run the same command
# again on every machine: each worker restores the last completed epoch from its
# BackupAndRestore state (<model_dir>/backup on the chief, workertemp_<i>/backup on
# the others, so model_dir must persist on every machine) and training continues.
#
# On one machine, for trying it out: --local=N starts N workers on 127.0.0.1 with free
# ports, says where each worker's log is (<model_dir>/worker_<i>.log; model_dir from the
# train flags, default runs/multiworker), waits for them, then prints the chief's result
# (its last log line and test accuracy) and exits non-zero if any worker failed.
#
#   scripts/launch_multiworker.sh --local=2 -- --flagfile=flags/smoke.cfg --model_dir=runs/mw
#
# The Python is $PYTHON, else this checkout's .venv/bin/python, else python3 on PATH
# (scripts/project_python.sh).
set -euo pipefail

source "$(dirname "$0")/project_python.sh"
workers="" index="" local_n=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers=*) workers="${1#*=}" ;;
    --index=*) index="${1#*=}" ;;
    --local=*) local_n="${1#*=}" ;;
    -h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;  # the comment above
    --) shift; break ;;
    *) echo "error: unknown option $1 (options: --workers=h:p,... --index=i | --local=N, then -- train flags)" >&2; exit 2 ;;
  esac
  shift
done

tf_config() {  # tf_config <comma-separated host:port list> <index>
  "$PYTHON" -c 'import json, sys
hosts = [h for h in sys.argv[1].split(",") if h]
print(json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": int(sys.argv[2])}}))' "$1" "$2"
}

if [[ -n "$local_n" ]]; then
  [[ "$local_n" =~ ^[1-9][0-9]*$ ]] || { echo "error: --local must be a positive integer, got $local_n" >&2; exit 2; }
  model_dir="runs/multiworker"
  for arg in "$@"; do [[ "$arg" == --model_dir=* ]] && model_dir="${arg#*=}"; done
  model_dir="${model_dir/#\~/$HOME}"  # as train expands it (the shell does not after "=")
  mkdir -p "$model_dir"
  # Free loopback ports, chosen by the kernel.
  workers=$("$PYTHON" -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(",".join("127.0.0.1:%d" % s.getsockname()[1] for s in socks))' "$local_n")
  IFS=, read -ra addresses <<<"$workers"
  pids=()
  for ((i = 0; i < local_n; i++)); do
    TF_CONFIG=$(tf_config "$workers" "$i") "$PYTHON" -m keras_resnet_cifar.train \
      --distribute=multi_worker "$@" >"$model_dir/worker_$i.log" 2>&1 &
    pids+=($!)
    echo "worker $i$([[ $i == 0 ]] && echo ' (chief)') started on ${addresses[$i]} (pid $!): log $model_dir/worker_$i.log"
  done
  trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
  echo "waiting for $local_n workers (follow one with: tail -f $model_dir/worker_0.log)"
  status=0
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      echo "worker $i failed: $(tail -n 1 "$model_dir/worker_$i.log") (log $model_dir/worker_$i.log)" >&2
      status=1
    fi
  done
  if [[ $status == 0 ]]; then
    echo "all $local_n workers finished; the chief (worker 0) wrote $model_dir:"
    "$PYTHON" -c 'import sys
from keras_resnet_cifar import run_files
m = run_files.read_metrics(sys.argv[1]) or {}
print("  %s: test accuracy %s on %s test images, %s replicas, %s epochs" % (
    m.get("model", "?"), m.get("test_accuracy", "?"), m.get("test_images", "?"),
    m.get("replicas", "?"), m.get("epochs_completed", "?")))' "$model_dir"
  fi
  exit $status
fi

[[ -n "$workers" && -n "$index" ]] || { echo "error: give --workers=host:port,... and --index=i (or --local=N)" >&2; exit 2; }
export TF_CONFIG
TF_CONFIG=$(tf_config "$workers" "$index")
exec "$PYTHON" -m keras_resnet_cifar.train --distribute=multi_worker "$@"
