"""The reference trainers' SGD as a Keras optimiser, and the per-step learning-rate schedule.

torch.optim.SGD (and fb.resnet.torch) keep the rate outside the momentum buffer,
v = m v + g; w -= lr v, where Keras' SGD keeps it inside, m = m m - lr g; w += m. They
agree while lr is constant and part at every change: one step after a drop from 0.1 to
0.01, Keras' SGD had moved the kernels 12% (relative) away from PyTorch's, ReferenceSGD
stays at float noise (docs/fidelity.md, scripts/compare_sgd_with_pytorch.py).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_resnet_cifar.config import TrainConfig, learning_rate_at


@keras.saving.register_keras_serializable(package="keras_resnet_cifar")
class ReferenceSGD(keras.optimizers.Optimizer):
    """torch.optim.SGD's momentum (dampening 0): v = m v + g, w -= lr v, v starting at zero
    (the first step is v = g). Weight decay is the models' L2 term, whose gradient is in g."""

    def __init__(self, learning_rate=0.1, momentum: float = 0.9,
                 name: str = "reference_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
        self.momentum = momentum

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = [self.add_variable_from_reference(v, "velocity") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        v = self.velocities[self._get_variable_index(variable)]
        self.assign(v, ops.add(ops.multiply(v, ops.cast(self.momentum, variable.dtype)), gradient))
        self.assign_sub(variable, ops.multiply(learning_rate, v))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}


class StepSchedule(keras.callbacks.Callback):
    """Sets the learning rate before every step to learning_rate_at(e + s / steps) and logs
    it per epoch. Keras calls back once per execution, so a change comes up to
    steps_per_execution - 1 steps late (tests/test_train.py pins it)."""

    def __init__(self, config: TrainConfig):
        super().__init__()
        self.config = config
        self._epoch = 0
        self._rate: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        steps = (self.params or {}).get("steps")  # None: unknown epoch length
        epoch = self._epoch + (batch / steps if steps else 0.0)
        rate = learning_rate_at(epoch, self.config)
        if rate != self._rate:
            self.model.optimizer.learning_rate = rate
            self._rate = rate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(ops.convert_to_numpy(self.model.optimizer.learning_rate))
