"""BatchNorm's saved running averages are exactly what the reference trainer keeps.

torch.nn.BatchNorm2d (momentum 0.1) updates, once per training step, with the
statistics of that step's batch under the weights of that step:

    running_mean = 0.9 * running_mean + 0.1 * batch_mean
    running_var  = 0.9 * running_var  + 0.1 * batch_var_unbiased

Here the real training loop (the train CLI: model.fit, its callbacks, the
per-epoch evaluation, the run directory's writes) runs with a learning rate of
1e-30, so no weight moves, and the model.keras it saves must hold exactly the
average above over the very batches the pipeline fed it, recomputed outside the
loop. Anything between the steps and the save that touched the averages (a
second update per step, a skipped step, another momentum, the biased variance,
an evaluation in training mode, a stale copy saved) shows up here.
"""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

from keras_resnet_cifar.data import datasets, pipeline

SMOKE = Path(__file__).resolve().parents[2] / "flags" / "smoke.cfg"


def run_train(*args):
    cmd = [sys.executable, "-m", "keras_resnet_cifar.train", f"--flagfile={SMOKE}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stderr[-3000:]}"
    return done


BATCH, STEPS, EPOCHS = 16, 4, 2


def expected_averages(model: keras.Model) -> list[tuple[np.ndarray, np.ndarray]]:
    """The reference's running averages over the run's batches, with ``model``'s weights."""
    layers = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    probe = keras.Model(model.inputs, [l.input for l in layers])
    data = datasets.load("synthetic", seed=0, synthetic_sizes=(512, 256))
    batches = pipeline.train_dataset(data.train, BATCH, seed=0, last_epoch=EPOCHS,
                                           steps_per_epoch=STEPS)
    averages = [(np.zeros(l.moving_mean.shape), np.ones(l.moving_variance.shape))
                for l in layers]
    for images, _ in batches:
        for i, x in enumerate(probe(images, training=True)):
            x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
            mean, var = averages[i]
            averages[i] = (0.9 * mean + 0.1 * x.mean(axis=0),
                           0.9 * var + 0.1 * x.var(axis=0, ddof=1))
    return averages


def test_saved_running_averages_are_the_references_over_the_runs_batches(tmp_path):
    run_dir = tmp_path / "run"
    run_train(f"--model_dir={run_dir}", "--learning_rate=1e-30", "--weight_decay=0",
              f"--batch_size={BATCH}", f"--steps_per_epoch={STEPS}", f"--epochs={EPOCHS}")
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    layers = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    saved = [(l.moving_mean.numpy(), l.moving_variance.numpy()) for l in layers]
    assert len(saved) == 7  # resnet8: the stem and two per block
    for layer, (mean, var), (want_mean, want_var) in zip(layers, saved,
                                                         expected_averages(model)):
        # Float noise only: the biased variance would be off by 1/n, n = 16 x 8 x 8 = 1024
        # in the last stage (1e-3), a second update or a momentum of 0.99 by far more.
        np.testing.assert_allclose(mean, want_mean, atol=1e-4 * np.sqrt(want_var).max(),
                                   err_msg=f"{layer.name} moving_mean")
        np.testing.assert_allclose(var, want_var, rtol=2e-4, err_msg=f"{layer.name} moving_variance")
