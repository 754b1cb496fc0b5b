"""GPU-facing options on CPU (mixed precision, XLA) and two-worker training on loopback.

The two-worker runs use 127.0.0.1 only, with ports the kernel picks, and every
process has a timeout.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_resnet_cifar.data import datasets, pipeline
from keras_resnet_cifar.training import loop
from keras_resnet_cifar.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "flags" / "smoke.cfg"
LAUNCH = REPO / "scripts" / "launch_multiworker.sh"
# resnet8 on synthetic data, global batch 64 (32 per replica), 4 steps, 1 epoch.
RUN = [f"--flagfile={SMOKE}", "--epochs=1", "--progress=0"]
TIMEOUT_S = 300


@pytest.fixture
def policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def _train_briefly(config, steps=3):
    data = datasets.synthetic(config.batch_size * steps, 16, seed=0)
    keras.utils.set_random_seed(0)
    model = loop.build_and_compile(config)
    ds = pipeline.train_dataset(data.train, config.batch_size, seed=0)
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    return model, history.history["loss"][-1], data


@pytest.mark.parametrize("precision,compute", [("mixed_float16", "float16"),
                                               ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision_keeps_variables_batch_norm_and_softmax_in_float32(
        policy, precision, compute):
    config = TrainConfig(model="resnet8", batch_size=16, mixed_precision=precision)
    model, loss, data = _train_briefly(config)
    assert np.isfinite(loss)
    assert all(v.dtype == "float32" for v in model.weights)
    if precision == "mixed_float16":  # Keras wraps the optimizer for loss scaling
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    probe = keras.Model(model.input, {name: model.get_layer(name).output for name in (
        "stem_conv", "stem_bn", "stage2_block1_conv1", "stage2_block1_bn2",
        "stage2_block1_out", "logits", "probabilities")})
    out = probe(data.train.images[:4].astype("float32"), training=True)
    for name in ("stem_conv", "stage2_block1_conv1", "stage2_block1_out", "logits"):
        assert out[name].dtype == compute, name
    for name in ("stem_bn", "stage2_block1_bn2", "probabilities"):
        assert out[name].dtype == "float32", name
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, rtol=1e-5)


_JIT_SCRIPT = r"""
import sys
from keras_resnet_cifar.data import datasets, pipeline
from keras_resnet_cifar.training import loop
from keras_resnet_cifar.config import TrainConfig
config = TrainConfig(model="resnet8", batch_size=16, jit_compile=sys.argv[1] == "1",
                     dataset="synthetic", synthetic_train_size=64,
                     steps_per_execution=2)
data = datasets.synthetic(64, 16, seed=0)
model = loop.build_and_compile(config)
history = model.fit(pipeline.train_dataset(data.train, 16, seed=0), epochs=1, verbose=0)
print(history.history["loss"][-1])
"""


@pytest.mark.parametrize("jit", [True, False])
def test_jit_compile_compiles_the_train_step_with_xla(tmp_path, jit):
    """XLA's own dump shows the train step compiled with --jit_compile, and only then."""
    dump = tmp_path / "xla"
    env = {**os.environ, "XLA_FLAGS": f"--xla_dump_to={dump}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", _JIT_SCRIPT, "1" if jit else "0"], env=env,
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.isfinite(float(r.stdout.split()[-1]))
    compiled = list(dump.glob("*one_step_on_data*")) if dump.exists() else []
    assert bool(compiled) == jit


def test_global_batch_is_split_across_replicas():
    """MirroredStrategy over two logical CPUs: each replica gets half of each batch."""
    script = (
        "import tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from keras_resnet_cifar.data import datasets, pipeline\n"
        "from keras_resnet_cifar.training import distribution\n"
        "s = distribution.make_strategy('mirrored')\n"
        "ds = pipeline.train_dataset(datasets.synthetic(64, 8).train, 32, seed=0)\n"
        "batch = next(iter(s.experimental_distribute_dataset(ds)))\n"
        "print([int(t.shape[0]) for t in s.experimental_local_results(batch[0])])\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=TIMEOUT_S)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[16, 16]"


# --- Two workers on loopback ----------------------------------------------------------

def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _run(cmd, env=None):
    """Runs ``cmd`` in its own process group; kills the whole group on timeout."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{cmd[:4]} timed out:\n{err[-3000:]}")
    return proc.returncode, out, err


def _two_workers(model_dir, *extra, per_worker=((), ())):
    """Two ``train --distribute=multi_worker`` processes on 127.0.0.1; returns their stderr."""
    hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "keras_resnet_cifar.train", *RUN,
             "--distribute=multi_worker", f"--model_dir={model_dir}", *extra,
             *per_worker[index]],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True))
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=TIMEOUT_S)[1])
    except subprocess.TimeoutExpired:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the two workers timed out")
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-3000:]
    return logs


def _weights(run_dir):
    model = keras.saving.load_model(run_dir / "model.keras")
    return {w.path: w.numpy() for w in model.weights}


def _max_relative_difference(a, b):
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k] - b[k])) / (np.max(np.abs(b[k])) + 1e-12)) for k in a)


@pytest.fixture(scope="module")
def mirrored_reference(tmp_path_factory):
    """One process, MirroredStrategy over 2 logical CPUs: the same 2 replicas of 32."""
    run_dir = tmp_path_factory.mktemp("mirrored") / "run"
    code, _, err = _run([sys.executable, "-m", "keras_resnet_cifar.train", *RUN,
                         "--distribute=mirrored", "--cpu_devices=2", f"--model_dir={run_dir}"])
    assert code == 0, err[-3000:]
    return run_dir


@pytest.mark.slow
def test_two_workers_match_one_process_then_resume(mirrored_reference, tmp_path):
    run_dir = tmp_path / "mw"
    env = {**os.environ, "PYTHON": sys.executable}
    code, _, err = _run(["bash", str(LAUNCH), "--local=2", "--", *RUN,
                         f"--model_dir={run_dir}"], env=env)
    assert code == 0, err + (run_dir / "worker_0.log").read_text()[-3000:]

    # The union of the workers' halves is the single process's global batch (the
    # weights are bitwise equal on the machine this was written on).
    assert _max_relative_difference(_weights(run_dir), _weights(mirrored_reference)) < 1e-6
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["replicas"] == 2
    # Only the chief wrote the run directory; worker 1 kept its state apart.
    worker = run_dir / "workertemp_1"
    assert (worker / "backup").is_dir() and (worker / "history.json").is_file()
    assert not (worker / "model.keras").exists() and not (worker / "checkpoints").exists()
    assert not (worker / "tensorboard").exists()

    # Both workers restart with more epochs: each restores epoch 1 and trains epoch 2 only.
    chief_log, _ = _two_workers(run_dir, "--epochs=2")
    for state in (run_dir, worker):
        rows = json.loads((state / "history.json").read_text())["epochs"]
        assert [r["epoch"] for r in rows] == [1, 2]
    assert "epoch 2/2" in chief_log and "epoch 1/2" not in chief_log
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_completed"] == 2


@pytest.mark.slow
def test_workers_that_disagree_on_the_data_do_not_match(mirrored_reference, tmp_path):
    # Worker 1 shuffles and augments with another seed: its half of each global
    # batch is not the single process's second half any more.
    run_dir = tmp_path / "mw_bad"
    _two_workers(run_dir, per_worker=((), ("--seed=1",)))
    assert _max_relative_difference(_weights(run_dir), _weights(mirrored_reference)) > 1e-2


@pytest.mark.parametrize("task,cluster,chief", [
    ({"type": "worker", "index": 0}, {"worker": ["a", "b"]}, True),
    ({"type": "worker", "index": 1}, {"worker": ["a", "b"]}, False),
    ({"type": "worker", "index": 0}, {"chief": ["c"], "worker": ["a"]}, False),
    ({"type": "chief", "index": 0}, {"chief": ["c"], "worker": ["a"]}, True),
])
def test_the_chief_is_known_from_tf_config_before_the_strategy(monkeypatch, task, cluster,
                                                                chief):
    """The commands draw curves.png after training only in the process that writes the run."""
    from keras_resnet_cifar.training import distribution

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert distribution.is_chief_process("multi_worker") is chief
    assert distribution.is_chief_process("auto") is True  # TF_CONFIG means nothing there
    monkeypatch.delenv("TF_CONFIG")
    assert distribution.is_chief_process("multi_worker") is True
