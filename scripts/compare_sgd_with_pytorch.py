#!/usr/bin/env python3
"""Step-by-step check of the project's training step against the PyTorch reference trainer.

Builds the network with the project's own training path (``build_and_compile``:
ReferenceSGD, the weight-decay terms, fused BatchNorm) and the same network in
PyTorch from the *same initial weights*, then trains both on the same real CIFAR-10
batches with ``torch.optim.SGD(momentum=0.9, weight_decay=1e-4)`` on the PyTorch
side and ``model.fit`` with the project's schedule callback on the Keras side.
The learning rate drops by 10x twice (after each phase of ``--steps_per_phase``
steps), where the two momentum conventions part.

After every step it prints the largest relative difference between the two
networks' kernels (max over the conv and linear weights of ||keras - torch|| /
||torch||), next to the float-noise level: the same difference between two
PyTorch runs that differ only in their convolution kernels (channels-last vs
channels-first memory layout). The same over all parameters (BatchNorm's beta
starts at zero, so its relative differences are large for both) and over the
BatchNorm running statistics follows, then the project's kernels against the
channels-last PyTorch run (both use oneDNN's NHWC convolutions on x86 CPUs). ``--keras_sgd`` adds a column for Keras' own ``SGD`` (lr inside the
velocity), the optimiser this project replaced.

Needs PyTorch beside the project (the project itself never depends on it):

    pip install torch numpy        # into the project's environment
    python scripts/compare_sgd_with_pytorch.py --data_dir=~/data/cifar10 --model=resnet20

The batches are real training images with the project's augmentation (pad 4,
random 32x32 crop, horizontal flip) drawn once in NumPy, so both sides see the
same pixels; the check is about the optimisation, not the input pipeline.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

from keras_resnet_cifar import cli

cli.use_onednn_by_default()  # before TensorFlow loads, as the train CLI
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

try:
    import torch  # noqa: E402
    import torch.nn.functional as F  # noqa: E402
except ImportError:
    sys.exit("error: this check needs PyTorch beside the project: pip install torch")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_torch  # noqa: E402  (the reference network, with its parameter names)

with cli.native_logs_muted():  # TensorFlow's start-up lines (cuInit on a CPU-only machine)
    import keras  # noqa: E402

    from keras_resnet_cifar.data import datasets  # noqa: E402
    from keras_resnet_cifar.models import arch, networks, reference_weights  # noqa: E402
    from keras_resnet_cifar.training import loop, optimizer  # noqa: E402
from keras_resnet_cifar.config import TrainConfig, learning_rate_at  # noqa: E402
from keras_resnet_cifar.errors import UserError, exit_with, message_of  # noqa: E402


# --- Runs ------------------------------------------------------------------------------------

def make_batches(data_dir: str, steps: int, batch: int, seed: int):
    """Real augmented batches: (steps, batch, 32, 32, 3) uint8 pixels and int labels."""
    train = datasets.load("cifar10", data_dir).train
    rng = np.random.default_rng(seed)
    index = rng.permutation(len(train.labels))[:steps * batch]
    images = np.pad(train.images[index], ((0, 0), (4, 4), (4, 4), (0, 0)))
    dy, dx = rng.integers(0, 9, (2, len(index)))
    flip = rng.random(len(index)) < 0.5
    crops = np.stack([img[y:y + 32, x:x + 32] for img, y, x in zip(images, dy, dx)])
    crops[flip] = crops[flip, :, ::-1]
    return (crops.reshape(steps, batch, 32, 32, 3),
            train.labels[index].reshape(steps, batch))


def run_keras(config: TrainConfig, initial, images, labels, keras_sgd=False, every=1):
    """Parameters of the project's training path every ``every`` steps (reference state
    dicts), and the trained model."""
    model = loop.build_and_compile(config)
    model.set_weights(initial)
    if keras_sgd:  # the optimiser the project replaced, for comparison
        model.compile(optimizer=keras.optimizers.SGD(learning_rate_at(0, config),
                                                     momentum=config.momentum),
                      loss=model.loss, metrics=[])
    states, done = [], [0]

    def record_state(batch, logs):
        done[0] += 1
        if done[0] % every == 0:
            states.append(reference_weights.to_state_dict(model))

    record = keras.callbacks.LambdaCallback(on_train_batch_end=record_state)
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float32), labels.astype(np.int64)))
    model.fit(data, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
              shuffle=False, verbose=0,
              callbacks=[optimizer.StepSchedule(config), record])
    return states, model


def run_torch(config: TrainConfig, spec, initial_state, images, labels, channels_last=False,
              every=1):
    """Parameters of torch.optim.SGD on the reference network every ``every`` steps, and
    the trained network."""
    net = reference_torch.CifarNet(spec.blocks_per_stage, spec.residual, arch.CIFAR10_MEAN,
                                   arch.CIFAR10_STD, widths=spec.widths)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in initial_state.items()},
                        strict=False)
    net.train()
    memory = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory)
    opt = torch.optim.SGD(net.parameters(), lr=learning_rate_at(0, config),
                          momentum=config.momentum, weight_decay=config.weight_decay)
    states = []
    for step, (x, y) in enumerate(zip(images, labels)):
        for group in opt.param_groups:  # the same per-epoch schedule
            group["lr"] = learning_rate_at(step // config.steps_per_epoch, config)
        pixels = torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2)
        pixels = pixels.contiguous(memory_format=memory)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(pixels), torch.from_numpy(y.astype(np.int64))).backward()
        opt.step()
        if (step + 1) % every == 0:
            states.append({k: v.detach().numpy().copy() for k, v in net.state_dict().items()
                           if k in initial_state})
    return states, net


def print_batch_norm_check(data_dir, seed, model, nets):
    """Saved vs re-estimated BatchNorm statistics of each trained network, on the test set."""
    import measure_batch_norm_lag as lag

    data = datasets.load("cifar10", data_dir)
    batches = lag.recalibration_batches(data.train, seed + 1000)
    rows = {"project (Keras)": lag.measure(model, data.test.images, data.test.labels, batches)}
    for name, net in nets.items():
        layers = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]

        def averages():
            return [(m.running_mean.numpy().copy(), m.running_var.numpy().copy())
                    for m in layers]

        def accuracy():
            net.eval()
            with torch.no_grad():
                logits = torch.cat([net(reference_torch.to_nchw(data.test.images[i:i + 500]))
                                    for i in range(0, len(data.test.labels), 500)])
            net.train()
            return float(np.mean(logits.argmax(1).numpy() == data.test.labels))

        saved, before = averages(), accuracy()
        with torch.no_grad():
            for images in batches:
                net(reference_torch.to_nchw(images))
        rows[name] = {"test_accuracy": before, "bn_recalibrated_test_accuracy": accuracy(),
                      **lag.lag(saved, averages())}
    print(f"# BatchNorm running statistics after training, {lag.BATCHES} re-estimation batches; "
          f"test accuracy on {len(data.test.labels)} images")
    print(f"{'network':<24} {'saved':>7} {'re-estimated':>13} {'gain':>7} {'lag_mean':>9} "
          f"{'lag_log_var':>12}")
    for name, r in rows.items():
        print(f"{name:<24} {r['test_accuracy']:>7.4f} {r['bn_recalibrated_test_accuracy']:>13.4f} "
              f"{100 * (r['bn_recalibrated_test_accuracy'] - r['test_accuracy']):>+6.1f}p "
              f"{r['bn_lag_mean']:>9.3f} {r['bn_lag_log_variance']:>12.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", required=True,
                   help="A local CIFAR-10 copy (as train's --data_dir).")
    p.add_argument("--model", default="resnet20", help="plainN or resnetN (option A).")
    p.add_argument("--steps_per_phase", type=int, default=4,
                   help="Steps at lr 0.1, then at 0.01, then at 0.001.")
    p.add_argument("--phases", type=int, default=3, choices=(1, 2, 3),
                   help="Learning-rate phases (1: lr 0.1 throughout).")
    p.add_argument("--every", type=int, default=1,
                   help="Compare (and print) every this many steps.")
    p.add_argument("--batch_norm_check", action="store_true",
                   help="At the end, re-estimate each trained network's BatchNorm running "
                        "statistics from 60 augmented training batches and print the test "
                        "accuracy before and after, and the lag (measure_batch_norm_lag.py)."),
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: default).")
    p.add_argument("--initial_weights", default=None,
                   help="Start from a trained reference state dict (resnetN.npz, as "
                        "import_weights reads) instead of a fresh initialisation.")
    p.add_argument("--keras_sgd", action="store_true",
                   help="Also run Keras' own SGD (lr inside the velocity) for contrast.")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    data_dir = os.path.expandvars(os.path.expanduser(a.data_dir))
    try:
        config = TrainConfig(model=a.model, epochs=a.phases, steps_per_epoch=a.steps_per_phase,
                             batch_size=a.batch_size,
                             lr_boundaries=tuple(range(1, a.phases)) or (a.phases,),
                             lr_decay=0.1,
                             learning_rate=0.1, momentum=0.9, weight_decay=1e-4,
                             weight_decay_scope="all", seed=a.seed)
    except ValueError as e:  # a bad --model, --batch_size, ... (the config says which)
        raise UserError(str(e)) from None
    spec = arch.parse_name(a.model)
    steps = config.epochs * config.steps_per_epoch
    images, labels = make_batches(data_dir, steps, a.batch_size, a.seed)

    keras.utils.set_random_seed(a.seed)
    initial = loop.build_and_compile(config).get_weights()
    if a.initial_weights:
        trained = reference_weights.reference_model(reference_weights.load_state_dict(
            os.path.expandvars(os.path.expanduser(a.initial_weights))))
        if trained.name != a.model:
            sys.exit(f"error: --initial_weights holds {trained.name}, not {a.model}")
        initial = trained.get_weights()
    template = networks.build_model(a.model)
    template.set_weights(initial)
    initial_state = reference_weights.to_state_dict(template)
    kernels = [k for k in initial_state if k.endswith("weight") and initial_state[k].ndim > 1]
    params = [k for k in initial_state if not k.endswith(("running_mean", "running_var"))]
    stats = [k for k in initial_state if k.endswith(("running_mean", "running_var"))]

    started = time.time()

    def progress(what):
        print(f"{time.time() - started:5.0f} s: {what}", file=sys.stderr, flush=True)

    progress(f"training {steps} steps: the project (Keras, ReferenceSGD)")
    project, project_model = run_keras(config, initial, images, labels, every=a.every)
    progress("PyTorch (torch.optim.SGD)")
    reference, reference_net = run_torch(config, spec, initial_state, images, labels,
                                         every=a.every)
    progress("PyTorch channels-last (the noise level)")
    noise, noise_net = run_torch(config, spec, initial_state, images, labels,
                                 channels_last=True, every=a.every)
    if a.keras_sgd:
        progress("Keras' own SGD")
    stock = (run_keras(config, initial, images, labels, keras_sgd=True, every=a.every)[0]
             if a.keras_sgd else None)

    start = f"trained weights {os.path.basename(a.initial_weights)}" if a.initial_weights \
        else f"fresh initialisation, seed {a.seed}"
    print(f"# {a.model} from {start}, batch {a.batch_size}, {steps} steps on real "
          f"CIFAR-10 batches; "
          f"torch {torch.__version__}, keras {keras.__version__}, "
          f"{platform.processor() or platform.machine()}; {time.time() - started:.0f} s")
    print("# relative difference to the PyTorch trainer after each step: max over tensors "
          "of ||a - b|| / ||b||;\n# 'noise' is PyTorch channels-last against PyTorch "
          "channels-first (same weights, same batches)")
    print("# 'norms' is ||project kernels|| / ||PyTorch kernels|| over all kernels together "
          "(a larger effective step would show as a drift away from 1)")
    print(f"{'':>11} {'conv and linear kernels':^29} {'all parameters':^20} "
          f"{'BN running stats':^20} {'vs torch CL':>11} {'':>7}"
          + (f" {'Keras SGD':>10}" if stock else ""))
    print(f"{'step':>4} {'lr':>6} {'project':>9} {'noise':>9} {'ratio':>9} "
          f"{'project':>9} {'noise':>10} {'project':>9} {'noise':>10} {'kernels':>11} "
          f"{'norms':>7}" + (f" {'kernels':>10}" if stock else ""))

    def diff(a, b, keys):
        return max(float(np.linalg.norm(a[k] - b[k]) / np.linalg.norm(b[k])) for k in keys)

    def norm(state, keys):
        return math.sqrt(sum(float(np.sum(state[k].astype(np.float64) ** 2)) for k in keys))

    worst = 0.0
    for i in range(len(project)):
        step = (i + 1) * a.every - 1
        lr = learning_rate_at(step // config.steps_per_epoch, config)
        ours, floor = diff(project[i], reference[i], kernels), diff(
            noise[i], reference[i], kernels)
        worst = max(worst, ours / floor)
        line = (f"{step + 1:>4} {lr:>6.3g} {ours:>9.2e} {floor:>9.2e} {ours / floor:>9.2f} "
                f"{diff(project[i], reference[i], params):>9.2e} "
                f"{diff(noise[i], reference[i], params):>10.2e} "
                f"{diff(project[i], reference[i], stats):>9.2e} "
                f"{diff(noise[i], reference[i], stats):>10.2e} "
                f"{diff(project[i], noise[i], kernels):>11.2e} "
                f"{norm(project[i], kernels) / norm(reference[i], kernels):>7.4f}")
        if stock:
            line += f" {diff(stock[i], reference[i], kernels):>10.2e}"
        print(line)
    print(f"# kernels: largest ratio of the project's difference to the noise level: {worst:.2f}")
    if a.batch_norm_check:
        progress("BatchNorm check: test accuracy with the saved and re-estimated statistics")
        print_batch_norm_check(data_dir, a.seed, project_model,
                               {"PyTorch": reference_net, "PyTorch channels-last": noise_net})


if __name__ == "__main__":
    with cli.native_logs_muted():
        try:
            main()
        except UserError as e:  # a bad --data_dir, --model, --initial_weights: one line
            exit_with(message_of(e))
