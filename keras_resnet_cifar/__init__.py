"""keras-resnet-cifar: He et al. (2016) plain and residual CIFAR-10 networks in Keras 3.

The public API (docs/api.md) is this package's top level::

    from keras_resnet_cifar import build_model, TrainConfig, train_and_evaluate, load_model

Each name is looked up in its module only when first used (PEP 562's module
``__getattr__``), so ``import keras_resnet_cifar`` stays as light as before: every
command's ``--help`` answers at once, and the edge install, which has no
TensorFlow, can still import what runs a ``.tflite`` model.

Importing the package registers its training optimiser, ``ReferenceSGD``, with
Keras, so that ``keras.saving.load_model("runs/<run>/model.keras")`` finds it.
The package import itself never loads Keras or TensorFlow (the edge path and the
tools' ``--help`` must stay light): when Keras is already imported the optimiser
module is imported at once; otherwise it is imported right after Keras first
loads, by :func:`_register_after_keras`.
"""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_OPTIMIZER = "keras_resnet_cifar.training.optimizer"


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Imports the optimiser module (which registers ReferenceSGD) once Keras has loaded.

    A finder ahead of the others that answers only for ``keras``: it removes
    itself, asks the remaining finders for the real spec and wraps its loader so
    that, after Keras' own module code has run, the optimiser module is imported.
    Nothing else is touched.
    """

    _asking = False  # inside find_spec: let the other finders answer

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or self._asking:
            return None
        # Only looking (TensorFlow asks importlib.util.find_spec("keras") before it
        # imports Keras) leaves this finder in place; loading removes it.
        self._asking = True
        try:
            spec = importlib.util.find_spec(name)  # the other finders, as without this one
        finally:
            self._asking = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                _remove_finder()
                # Keras sees its own loader, as if this finder had never been there.
                module.__loader__ = module.__spec__.loader = loader
                loader.exec_module(module)
                importlib.import_module(_OPTIMIZER)

        spec.loader = _Loader()
        return spec


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AfterKeras)]


def _register_after_keras() -> None:
    """Registers ReferenceSGD now if Keras is loaded, else right after it loads."""
    if "keras" in sys.modules:
        importlib.import_module(_OPTIMIZER)
    elif not any(isinstance(f, _AfterKeras) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKeras())


_register_after_keras()


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
