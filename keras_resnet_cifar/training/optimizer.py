"""The reference trainers' SGD, as a Keras optimiser, and the learning-rate schedule.

Both reference trainers of the CIFAR ResNets (PyTorch's ``torch.optim.SGD`` and
Torch's ``optim.sgd`` of fb.resnet.torch) keep the learning rate *outside* the
momentum buffer::

    v = momentum * v + g          (g includes weight_decay * w, see models.py)
    w = w - lr * v

Keras' ``keras.optimizers.SGD`` keeps it *inside*::

    m = momentum * m - lr * g
    w = w + m

The two agree while lr is constant (``m = -lr * v``) and part at every lr change:
after a drop from 0.1 to 0.01 Keras still applies the old, ten times larger
velocity and lets it decay over tens of steps, while the reference applies the
accumulated gradient at the new rate from the next step on. Measured against the
PyTorch trainer with the same initial weights and batches, one step after such a
drop Keras' SGD had moved the kernels 12% (relative) away from PyTorch's;
:class:`ReferenceSGD` stays at float-noise level (docs/fidelity.md,
``scripts/compare_sgd_with_pytorch.py``).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_resnet_cifar.config import TrainConfig, learning_rate_at


@keras.saving.register_keras_serializable(package="keras_resnet_cifar")
class ReferenceSGD(keras.optimizers.Optimizer):
    """SGD with heavy-ball momentum, exactly as ``torch.optim.SGD`` (dampening 0).

    ``v = momentum * v + g; w -= lr * v``, with ``v`` starting at zero (the
    first step is then ``v = g``, as PyTorch's buffer initialisation gives). Weight
    decay is not applied here: the models carry it as an L2 loss term whose
    gradient ``weight_decay * w`` is part of ``g``, as in the reference.

    Args:
        learning_rate: a float or a schedule (see ``keras.optimizers.Optimizer``).
        momentum: the momentum factor, in [0, 1).
        name: the optimiser's name.
        **kwargs: the base optimiser's options (``clipnorm``, ``loss_scale_factor``...).
    """

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
        self.velocities = [self.add_variable_from_reference(v, "velocity")
                           for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        v = self.velocities[self._get_variable_index(variable)]
        self.assign(v, ops.add(ops.multiply(v, ops.cast(self.momentum, variable.dtype)),
                               gradient))
        self.assign_sub(variable, ops.multiply(learning_rate, v))

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum})
        return config


class StepSchedule(keras.callbacks.Callback):
    """Sets the optimiser's learning rate before every training step from the run's schedule.

    The rate before step ``s`` (0-based) of epoch ``e`` is :func:`learning_rate_at`
    at the fractional epoch ``e + s / steps_per_epoch``: a whole-epoch boundary
    changes it before the epoch's first step, as the reference trainers'
    per-epoch schedulers do, and a fractional one (``1.2``: after 20% of the
    second epoch) at the step it names. With :class:`ReferenceSGD` the new rate
    applies to the whole accumulated velocity from that step on. The rate is
    assigned only when it changes. With ``steps_per_execution > 1`` Keras calls
    back once per execution, so a change applies from the first execution that
    starts at or after the boundary: up to ``steps_per_execution - 1`` steps late
    (tests/test_train.py pins it). Adds ``learning_rate`` (the last step's) to each
    epoch's logs, as ``keras.callbacks.LearningRateScheduler`` does.

    Args:
        config: the run's configuration (its rate, boundaries, decay and warm-up).
    """

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
            logs["learning_rate"] = float(ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
