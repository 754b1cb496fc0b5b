"""keras-resnet-cifar: He et al. (2016) plain and residual CIFAR-10 networks in Keras 3.

The public API (docs/api.md) is imported name by name when first used (PEP 562): `import
keras_resnet_cifar` loads no Keras or TensorFlow, so `--help` answers at once and the edge
install (no TensorFlow) runs .tflite models.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# Loading a run's model.keras needs the optimiser training/optimizer.py registers; importing
# it here would load Keras, so it is imported with Keras: now, or by this finder of `keras`.
_OPTIMIZER = "keras_resnet_cifar.training.optimizer"


class _AfterKeras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)  # the other finders answer, as without this one
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)  # only looking (TensorFlow does) keeps it
        if spec is not None and hasattr(spec.loader, "exec_module"):
            run_keras = spec.loader.exec_module

            def exec_module(module):
                sys.meta_path.remove(self)
                run_keras(module)
                importlib.import_module(_OPTIMIZER)

            spec.loader.exec_module = exec_module  # this spec's own loader object
        return spec


if "keras" in sys.modules:
    importlib.import_module(_OPTIMIZER)
elif not any(isinstance(f, _AfterKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterKeras())


# The public API: name -> (module, attribute). The tests pin these names.
_PUBLIC = {
    "TrainConfig": ("keras_resnet_cifar.config", "TrainConfig"),
    "build_model": ("keras_resnet_cifar.models.networks", "build_model"),
    "load_data": ("keras_resnet_cifar.data.datasets", "load"),
    "train_and_evaluate": ("keras_resnet_cifar.training.loop", "train_and_evaluate"),
    "load_model": ("keras_resnet_cifar.deploy.predictor", "load"),
    "Predictor": ("keras_resnet_cifar.deploy.predictor", "Predictor"),
    "classify": ("keras_resnet_cifar.deploy.predictor", "classify"),
    "evaluate": ("keras_resnet_cifar.api", "evaluate"),
    "export": ("keras_resnet_cifar.api", "export"),
    "read_run": ("keras_resnet_cifar.api", "read_run"),
    "reference_model": ("keras_resnet_cifar.api", "reference_model"),
    "UserError": ("keras_resnet_cifar.errors", "UserError"),
    "CLASS_NAMES": ("keras_resnet_cifar.data.labels", "CIFAR10_CLASSES"),
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted({*globals(), *_PUBLIC})
