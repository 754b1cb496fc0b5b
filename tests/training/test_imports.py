"""The training room's imports: it never reaches into analysis (plots, curves.png are the commands')."""

import ast
from pathlib import Path

import keras_resnet_cifar

TRAINING = Path(keras_resnet_cifar.__file__).parent / "training"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
    return names


def test_the_training_library_imports_neither_analysis_nor_plots_nor_the_flag_layer():
    modules = sorted(TRAINING.glob("*.py"))
    assert len(modules) >= 8  # loop, distribution, batch_norm, callbacks, ... were found
    for module in modules:
        bad = {n for n in _imports(module)
               if n.startswith(("keras_resnet_cifar.analysis", "matplotlib",
                                "keras_resnet_cifar.cli", "keras_resnet_cifar.train_flags",
                                "absl.flags"))}
        assert not bad, f"{module.name} imports {sorted(bad)}"
    assert _imports(TRAINING / "__init__.py") == set()  # flag errors stay instant
