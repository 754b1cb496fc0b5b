#!/usr/bin/env bash
# Serves an exported model with the official TF Serving container, as production runs it.
#
#   scripts/serve.sh MODEL_NAME [EXPORT_DIR]        (EXPORT_DIR defaults to ./exports)
#
# First writes EXPORT_DIR/MODEL_NAME/models.config (the versions served and their
# labels, stable and canary) and EXPORT_DIR/MODEL_NAME/batching.config (the batching
# parameters) with python -m keras_resnet_cifar.serving_config (docs/deployment.md
# says what each field does). Then mounts EXPORT_DIR/MODEL_NAME (read-only) at
# /models/MODEL_NAME and starts TF Serving with --model_config_file and
# --enable_batching --batching_parameters_file; TF Serving replays each version's
# assets.extra/tf_serving_warmup_requests (written by export) before serving it.
# REST on REST_PORT (8501), gRPC on GRPC_PORT (8500). Then, e.g.:
#
#   python -m keras_resnet_cifar.serving_client --url=grpc://localhost:8500 \
#       --model_name=MODEL_NAME --model_label=stable cat.png
#
# Environment: IMAGE (default tensorflow/serving:latest; pin a version in
# production), REST_PORT, GRPC_PORT, STABLE and CANARY (versions; default: stable is
# the highest, no canary), DRY_RUN=1 (write the two files, print the command, run
# nothing), PYTHON (see scripts/project_python.sh).
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

source "$(dirname "${BASH_SOURCE[0]}")/project_python.sh"
config_args=(--out="$(dirname "$model_root")" --model_name="$name")
[[ -n ${STABLE:-} ]] && config_args+=(--stable="$STABLE")
[[ -n ${CANARY:-} ]] && config_args+=(--canary="$CANARY")
"$PYTHON" -m keras_resnet_cifar.serving_config "${config_args[@]}" >/dev/null

cmd=(docker run --rm --name "tfserving-$name"
     -p "${REST_PORT:-8501}:8501" -p "${GRPC_PORT:-8500}:8500"
     --mount "type=bind,source=$model_root,target=/models/$name,readonly"
     -e "MODEL_NAME=$name"
     "${IMAGE:-tensorflow/serving:latest}"
     --model_config_file="/models/$name/models.config"
     --enable_batching=true
     --batching_parameters_file="/models/$name/batching.config")

if [[ ${DRY_RUN:-0} == 1 ]]; then
  echo "${cmd[*]}"
  exit 0
fi
command -v docker >/dev/null || die "docker is not installed (see docs/deployment.md)"
docker info >/dev/null 2>&1 ||
  die "docker cannot reach its daemon (is it running, and may this user use it? docker info says why)"
exec "${cmd[@]}"
