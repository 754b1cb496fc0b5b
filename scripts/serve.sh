#!/usr/bin/env bash
# Serves an exported model with the official TF Serving container.
#
#   scripts/serve.sh MODEL_NAME [EXPORT_DIR]        (EXPORT_DIR defaults to ./exports)
#
# Mounts EXPORT_DIR/MODEL_NAME (read-only) at /models/MODEL_NAME, where the
# tensorflow/serving image looks for it; TF Serving then loads the highest
# numbered version and picks up new ones as keras_resnet_cifar.export adds them.
# REST on REST_PORT (8501), gRPC on GRPC_PORT (8500). Then, e.g.:
#
#   python -m keras_resnet_cifar.serving_client --url=http://localhost:8501 \
#       --model_name=MODEL_NAME cat.png
#
# Environment: IMAGE (default tensorflow/serving:latest; pin a version in
# production), REST_PORT, GRPC_PORT, DRY_RUN=1 (print the command, run nothing).
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then  # the comment above, without its "# "
  sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0
fi

die() { echo "error: $*" >&2; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: scripts/serve.sh MODEL_NAME [EXPORT_DIR]"
name=$1
[[ $name =~ ^[A-Za-z0-9_.-]+$ && $name != .* ]] || die "bad model name '$name'"
export_dir=${2:-exports}
[[ -d $export_dir/$name ]] || die "no $export_dir/$name: run python -m keras_resnet_cifar.export first"
model_root=$(cd "$export_dir/$name" && pwd)
ls "$model_root" | grep -qE '^[0-9]+$' || die "$model_root has no numbered version folder"

cmd=(docker run --rm --name "tfserving-$name"
     -p "${REST_PORT:-8501}:8501" -p "${GRPC_PORT:-8500}:8500"
     --mount "type=bind,source=$model_root,target=/models/$name,readonly"
     -e "MODEL_NAME=$name"
     "${IMAGE:-tensorflow/serving:latest}")

if [[ ${DRY_RUN:-0} == 1 ]]; then
  echo "${cmd[*]}"
  exit 0
fi
command -v docker >/dev/null || die "docker is not installed (see exports/README.md)"
exec "${cmd[@]}"
