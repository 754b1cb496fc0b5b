"""TF Serving's model config and batching parameters: written by serve.sh, parsed back.

The model config is parsed with tensorflow-serving-api's ModelServerConfig proto. The
wheel does not ship BatchingParameters (session_bundle_config.proto), so its text is
parsed with a descriptor declared here, field by field (names, numbers and types of
tensorflow_serving/servables/tensorflow/session_bundle_config.proto): text_format
refuses any field name or value that message does not have.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

text_format = pytest.importorskip("google.protobuf.text_format")
model_server_config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")

from google.protobuf import (descriptor_pb2, descriptor_pool, message_factory,  # noqa: E402
                             wrappers_pb2)

from keras_resnet_cifar.deploy import tf_serving  # noqa: E402
from keras_resnet_cifar.errors import UserError  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "serve.sh"


def _batching_parameters_class():
    """tensorflow.serving.BatchingParameters, declared as session_bundle_config.proto has it."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="test_session_bundle_config.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    message = file.message_type.add(name="BatchingParameters")
    for name, number, wrapper in (("max_batch_size", 1, "Int64Value"),
                                  ("batch_timeout_micros", 2, "Int64Value"),
                                  ("max_enqueued_batches", 3, "Int64Value"),
                                  ("num_batch_threads", 4, "Int64Value"),
                                  ("thread_pool_name", 5, "StringValue")):
        message.field.add(name=name, number=number, type=F.TYPE_MESSAGE,
                          label=F.LABEL_OPTIONAL, type_name=f".google.protobuf.{wrapper}")
    message.field.add(name="allowed_batch_sizes", number=6, type=F.TYPE_INT64,
                      label=F.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=F.TYPE_BOOL,
                      label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def _serve(tmp_path, *args, **env):
    return subprocess.run(["bash", str(SCRIPT), *args],
                          env={**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable,
                               "TF_CPP_MIN_LOG_LEVEL": "3", **env},
                          capture_output=True, text=True, timeout=300)


def test_serve_script_writes_both_files_and_passes_them(tmp_path):
    for version in (1, 2, 3):
        (tmp_path / "ex" / "resnet20" / str(version)).mkdir(parents=True)
    done = _serve(tmp_path, "resnet20", str(tmp_path / "ex"), STABLE="2", CANARY="3")
    assert done.returncode == 0, done.stderr
    command = done.stdout.split()
    assert command[:3] == ["docker", "run", "--rm"]
    image = command.index("tensorflow/serving:latest")
    assert command[image + 1:] == ["--model_config_file=/models/resnet20/models.config",
                                   "--enable_batching=true",
                                   "--batching_parameters_file=/models/resnet20/batching.config"]
    root = tmp_path / "ex" / "resnet20"  # mounted at /models/resnet20: the files go with it
    assert f"type=bind,source={root},target=/models/resnet20,readonly" in command

    config = text_format.Parse((root / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    [model] = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (
        "resnet20", "/models/resnet20", "tensorflow")
    assert list(model.model_version_policy.specific.versions) == [2, 3]
    assert dict(model.version_labels) == {"stable": 2, "canary": 3}

    batching = text_format.Parse((root / "batching.config").read_text(),
                                 _batching_parameters_class()())
    assert batching.max_batch_size.value == 128
    assert list(batching.allowed_batch_sizes) == list(tf_serving.BATCH_SIZES)
    assert batching.allowed_batch_sizes[-1] == batching.max_batch_size.value  # TF Serving's rule
    assert batching.batch_timeout_micros.value == 1000
    assert batching.num_batch_threads.value == os.cpu_count()
    assert batching.max_enqueued_batches.value == 100

    # Default: stable is the highest version, alone.
    assert _serve(tmp_path, "resnet20", str(tmp_path / "ex")).returncode == 0
    config = text_format.Parse((root / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    [model] = config.model_config_list.config
    assert list(model.model_version_policy.specific.versions) == [3]
    assert dict(model.version_labels) == {"stable": 3}


def test_a_label_for_a_missing_version_is_one_line(tmp_path):
    (tmp_path / "ex" / "m" / "1").mkdir(parents=True)
    done = _serve(tmp_path, "m", str(tmp_path / "ex"), CANARY="4")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: The canary version 4 is not among the exported versions of m (1)."]
    assert done.stdout == ""  # no docker command for a failed config


def test_batching_parameters_refuse_bad_values():
    text = tf_serving.batching_parameters(max_batch_size=64, num_batch_threads=3)
    parsed = text_format.Parse(text, _batching_parameters_class()())
    assert list(parsed.allowed_batch_sizes) == [1, 8, 32, 64]
    for bad in ({"max_batch_size": 0}, {"batch_timeout_micros": -1},
                {"num_batch_threads": -2}):
        with pytest.raises(UserError, match="must be >="):
            tf_serving.batching_parameters(**bad)
