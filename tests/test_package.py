"""What ``import keras_resnet_cifar`` does, in a fresh interpreter as a user has it.

Inside the test session other imports have long registered the optimiser, so these
checks run in new Python processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_SAVE = textwrap.dedent("""
    import sys
    from keras_resnet_cifar import config
    from keras_resnet_cifar.training import loop
    model = loop.build_and_compile(config.TrainConfig(model="resnet8"))
    model.optimizer.build(model.trainable_variables)
    model.save(sys.argv[1])
""")


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, env=env)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A .keras file compiled with the training optimiser, as train writes model.keras."""
    path = tmp_path_factory.mktemp("package") / "model.keras"
    done = _python(_SAVE, str(path))
    assert done.returncode == 0, done.stderr[-2000:]
    return path


@pytest.mark.parametrize("imports", ["import keras_resnet_cifar, keras",
                                     "import keras, keras_resnet_cifar",
                                     "import keras_resnet_cifar, tensorflow, keras"])
def test_model_keras_loads_after_importing_the_package(saved_model, imports):
    """README: the training optimiser is registered when the package is imported."""
    done = _python(f"{imports}\nimport sys\n"
                   "model = keras.saving.load_model(sys.argv[1])\n"
                   "print(type(model.optimizer).__name__)", str(saved_model))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ReferenceSGD"]


def test_model_keras_loads_without_the_package_when_not_compiled(saved_model):
    done = _python("import sys, keras\n"
                   "model = keras.saving.load_model(sys.argv[1], compile=False)\n"
                   "print(model.name)", str(saved_model))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["resnet8"]


def test_importing_the_package_loads_neither_keras_nor_tensorflow():
    """The edge path and the tools' --help rely on a light package import."""
    done = _python("import sys, keras_resnet_cifar, keras_resnet_cifar.deploy.edge\n"
                   "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_folders_and_config_import_nothing_heavy():
    """The domain folders' __init__ import nothing; config (the flags' checks, with the
    data room's DATASETS) imports neither Keras nor TensorFlow."""
    done = _python(
        "import sys, importlib\n"
        "folders = ('data', 'models', 'training', 'deploy', 'analysis')\n"
        "for name in folders:\n"
        "    importlib.import_module(f'keras_resnet_cifar.{name}')\n"
        "print(sorted(m for m in sys.modules if m.startswith('keras_resnet_cifar.')))\n"
        "import keras_resnet_cifar.config\n"
        "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    assert done.returncode == 0, done.stderr[-2000:]
    folders, heavy = done.stdout.strip().splitlines()
    assert folders == str([f"keras_resnet_cifar.{n}" for n in sorted(
        ("data", "models", "training", "deploy", "analysis"))])
    assert heavy == "[]"


def _part_imports(package: Path) -> dict[tuple[str, str], str]:
    """{(importing part, imported part): an example module} over every import statement,
    top-level or in a function; a part is a folder of the package or a top-level module."""
    import ast

    def part(module: str) -> str:
        return module.split(".")[1] if "." in module else module

    found = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            targets = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                       else [a.name for a in getattr(node, "names", [])]
                       if isinstance(node, ast.Import) else [])
            if isinstance(node, ast.ImportFrom) and node.module == package.name:
                targets = [f"{package.name}.{a.name}" for a in node.names]
            for target in targets:
                if target.startswith(f"{package.name}.") and part(target) != part(name) \
                        and "." in name:
                    found.setdefault((part(name), part(target)), name)
    return found


def test_no_two_parts_of_the_package_import_each_other():
    """The layering: commands over folders over the bottom modules, never both ways."""
    edges = _part_imports(REPO / "keras_resnet_cifar")
    both_ways = sorted(f"{a} ({edges[a, b]}) <-> {b} ({edges[b, a]})"
                       for a, b in edges if a < b and (b, a) in edges)
    assert not both_ways, both_ways
