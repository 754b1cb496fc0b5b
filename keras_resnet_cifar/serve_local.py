r"""A stand-in for TF Serving: serves one export on the loopback over REST and gRPC.

    python -m keras_resnet_cifar.serve_local --model_path=exports/resnet20
    python -m keras_resnet_cifar.serving_client --url=grpc://127.0.0.1:8500 \
        --model_name=resnet20 batch.npy

For trying the client without Docker, and for the tests: NOT TF Serving and not a
server to deploy (no batching, labels, warm-up or TLS; one version; 127.0.0.1
only). --model_path is exports/<name> (its highest version) or one version
folder. Ctrl-C or SIGTERM end it with exit status 0.
"""

from __future__ import annotations

import threading
from pathlib import Path

from absl import flags

from keras_resnet_cifar import cli
from keras_resnet_cifar.deploy import local_server, predictor, rest_client
from keras_resnet_cifar.errors import UserError

BANNER = "stand-in for TF Serving, for trying the client and for tests; not for deployment"


def define_flags() -> None:
    flags.DEFINE_string("model_path", None, "exports/<name> (its highest version) or one version "
                        "folder of an export.")
    flags.DEFINE_string("model_name", None, "The name to answer to; default: the model base "
                        "path's folder name.")
    flags.DEFINE_integer("rest_port", 8501, "REST port on 127.0.0.1 (0: any free one).",
                         lower_bound=0, upper_bound=65535)
    flags.DEFINE_integer("grpc_port", 8500, "gRPC port on 127.0.0.1 (0: any free one).",
                         lower_bound=0, upper_bound=65535)
    flags.DEFINE_boolean("trust_savedmodel", False, predictor.TRUST_HELP)


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    path = Path(FLAGS.model_path)
    if not path.is_dir():
        raise UserError(f"--model_path {path} is not a folder.")
    folder, version = local_server.model_version(path)
    name = FLAGS.model_name or (path.resolve().name if folder != path else
                                path.resolve().parent.name)
    problem = rest_client.name_problem(name)
    if problem:
        raise UserError(f"The model name {problem}, got {name!r}: give --model_name.")
    servable = local_server.Servable(folder, name, version, trust_savedmodel=FLAGS.trust_savedmodel)
    running = local_server.serve(servable, rest_port=FLAGS.rest_port, grpc_port=FLAGS.grpc_port)
    try:
        print(f"{BANNER}\nserving {name} version {version} from {folder}\n"
              f"REST {running.rest_url}\ngRPC {running.grpc_url}\nCtrl-C stops.", flush=True)
        threading.Event().wait()  # until Ctrl-C or SIGTERM (cli's StopSignals) ends it
    except KeyboardInterrupt:  # stopping is how a server ends: no error line, exit 0
        print("stopped", flush=True)
    finally:
        running.close()


if __name__ == "__main__":
    define_flags()
    cli.run(main, required={"model_path": "the export to serve"})
