"""The step profile: TensorFlow's profiler over a few steps of a tiny model, by op category.

No timing assertions: only that each category is found and the sums are consistent.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keras_resnet_cifar.analysis import step_profile

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name,expected", [
    ("StatefulPartitionedCall/resnet8_1/stem_conv_1/convolution:_MklNativeConv2D",
     "conv2d_forward"),
    ("StatefulPartitionedCall/gradient_tape/x/Conv2DBackpropFilter:_MklNativeConv2DBackpropFilter",
     "conv2d_backward"),
    ("StatefulPartitionedCall/gradient_tape/bn/FusedBatchNormGradV3:FusedBatchNormGradV3",
     "batch_norm"),
    ("StatefulPartitionedCall/reference_sgd/Mul_3:Mul", "optimizer"),
    ("StatefulPartitionedCall/x/ResourceApplyGradientDescent:ResourceApplyGradientDescent",
     "optimizer"),
    ("StatefulPartitionedCall/resnet8_1/relu_1/Relu:Relu", "elementwise"),
    ("StatefulPartitionedCall/resnet8_1/logits_1/MatMul:_FusedMatMul", "dense_and_loss"),
    ("StatefulPartitionedCall/ArgMax:ArgMax", "other"),
    ("ExecutorState::Process", None),
    ("ThreadpoolListener::Record", None),
])
def test_op_categories(name, expected):
    assert step_profile.category(name) == expected


def test_the_cli_profiles_a_tiny_model(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "profile_step.py"),
                        "--model=resnet8", "--steps=4", "--batch_size=16",
                        "--synthetic_train_size=64", f"--logdir={tmp_path}", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Warning" not in r.stderr, r.stderr[-3000:]  # e.g. Keras' `shuffle=True` ignored
    summary = json.loads(r.stdout)
    assert summary["steps"] == 3  # the first call's step is left out
    assert Path(summary["xplane"]).is_file() and str(tmp_path) in summary["xplane"]
    cats = summary["categories"]
    for name in ("conv2d_forward", "conv2d_backward", "batch_norm", "optimizer",
                 "elementwise", "input_pipeline"):
        assert cats[name] >= 0, name
    for name in ("conv2d_forward", "conv2d_backward", "batch_norm", "optimizer"):
        assert cats[name] > 0, name
    assert 0 <= summary["outside_ops_ms"] < summary["wall_ms"]
    assert summary["top_ops"] and all(ms > 0 for _, ms in summary["top_ops"])


def test_a_bad_step_count_is_one_line():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "profile_step.py"),
                        "--steps=1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: --steps must be a multiple")
