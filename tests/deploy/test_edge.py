"""The edge path: LiteRT alone, with TensorFlow and Keras made unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_resnet_cifar.data import datasets
from keras_resnet_cifar.deploy import edge, tflite
from keras_resnet_cifar.models import networks
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

# Installed as sitecustomize on PYTHONPATH: any import of TensorFlow or Keras fails,
# as on a device that has only numpy, Pillow and ai-edge-litert.
_BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    class _NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax", "torch"):
                raise ModuleNotFoundError(f"{name} is not installed on this edge device",
                                          name=name)
            return None

    sys.meta_path.insert(0, _NoTensorFlow())
""")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(folder, Keras model, pixels) with model_float32.tflite and model_int8.tflite.

    The model is trained a little on synthetic data, so that its answers are
    confident and differ between images: an int8 model that is wrong shows.
    """
    import keras

    folder = tmp_path_factory.mktemp("edge")
    data = datasets.synthetic(512, 200, seed=2)
    keras.utils.set_random_seed(0)
    model = networks.build_model("resnet8", weight_decay=0)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    model.fit(data.train.images.astype(np.float32), data.train.labels, batch_size=64,
              epochs=3, verbose=0)
    (folder / "model_float32.tflite").write_bytes(tflite.convert(model, "float32"))
    (folder / "model_int8.tflite").write_bytes(
        tflite.convert(model, "int8", data.train.images[:200]))
    return folder, model, data.test.images


def test_float_model_matches_keras(tiny):
    folder, model, pixels = tiny
    runner = edge.TFLiteClassifier(folder / "model_float32.tflite", num_threads=2)
    expected = model.predict(pixels.astype(np.float32), verbose=0)
    for batch_size in (1, 7, 64):  # resizing and the padded last batch
        np.testing.assert_allclose(runner.predict(pixels, batch_size=batch_size), expected,
                                   atol=1e-5)
    assert runner.class_names == CIFAR10_CLASSES
    assert runner.input_dtype == np.float32


def test_int8_model_takes_raw_uint8_pixels_and_agrees_with_keras(tiny):
    folder, model, pixels = tiny
    runner = edge.TFLiteClassifier(folder / "model_int8.tflite")
    assert runner.input_dtype == np.uint8
    assert runner._input["quantization"] == (1.0, 0)
    probabilities = runner.predict(pixels)
    assert probabilities.shape == (200, 10) and probabilities.dtype == np.float32
    expected = model.predict(pixels.astype(np.float32), verbose=0)
    # The trained model is not guessing: its answers spread over the classes.
    assert len(set(expected.argmax(1))) >= 5 and expected.max(1).mean() > 0.5
    agreement = np.mean(probabilities.argmax(1) == expected.argmax(1))
    assert agreement >= 0.95, agreement
    assert np.abs(probabilities - expected).mean() < 0.02
    # Pixels scaled as the int8 model does not expect (e.g. [0, 1]) break it: the
    # check above would see a wrong input quantisation.
    wrong = runner.predict((pixels // 255).astype(np.uint8))
    assert np.mean(wrong.argmax(1) == expected.argmax(1)) < agreement


def test_without_xnnpack_gives_the_same_answers(tiny):
    folder, _, pixels = tiny
    a = edge.TFLiteClassifier(folder / "model_float32.tflite").predict(pixels)
    b = edge.TFLiteClassifier(folder / "model_float32.tflite", xnnpack=False).predict(pixels)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_class_names_come_from_the_model_card(tiny, tmp_path):
    folder, _, _ = tiny
    (tmp_path / "m.tflite").write_bytes((folder / "model_float32.tflite").read_bytes())
    names = [f"c{i}" for i in range(10)]
    (tmp_path / "model_card.json").write_text(json.dumps({"class_names": names}))
    assert edge.TFLiteClassifier(tmp_path / "m.tflite").class_names == tuple(names)


def test_bad_models_and_threads(tiny, tmp_path):
    folder, _, _ = tiny
    with pytest.raises(UserError, match="No TFLite model"):
        edge.TFLiteClassifier(tmp_path / "missing.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="not a loadable TFLite model"):
        edge.TFLiteClassifier(tmp_path / "junk.tflite")
    with pytest.raises(UserError, match="num_threads"):
        edge.TFLiteClassifier(folder / "model_float32.tflite", num_threads=0)
    # Issue 29: a .tflite bomb took 3.6 GB. The file's size is bounded before LiteRT maps
    # it (a sparse file: it costs no disk); a FIFO is refused without blocking.
    bomb = tmp_path / "bomb.tflite"
    bomb.write_bytes((folder / "model_float32.tflite").read_bytes())
    os.truncate(bomb, edge.MAX_TFLITE_BYTES + 1)
    with pytest.raises(UserError, match=f"holds {edge.MAX_TFLITE_BYTES + 1:,} bytes, more "
                                        "than the 268,435,456 of any model"):
        edge.TFLiteClassifier(bomb)


def test_tensors_declaring_gigabytes_are_refused_before_litert_allocates(tiny, tmp_path):
    # Issue 29: a .tflite bomb took 3.6 GB: a file of kilobytes whose tensors declare
    # gigabytes, which LiteRT allocated on loading (2 GB for this one, and ran it).
    import resource

    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    folder, _, _ = tiny
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(
        (folder / "model_float32.tflite").read_bytes(), 0))
    [tensor] = [t for t in model.subgraphs[0].tensors if list(t.shape) == [1, 8, 8, 64]][:1]
    tensor.shape = np.array([1 << 17, 8, 8, 64], np.int32)  # 2 GiB of float32
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    (tmp_path / "bomb.tflite").write_bytes(builder.Output())
    assert (tmp_path / "bomb.tflite").stat().st_size < 1 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UserError, match=r"bomb.tflite declares tensors of [0-9,]+ bytes, "
                                        r"more than the 536,870,912 of any model"):
        edge.TFLiteClassifier(tmp_path / "bomb.tflite")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 << 10  # KiB


_EDGE_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    try:
        import tensorflow
        raise SystemExit("tensorflow imported")
    except ImportError:
        pass
    from keras_resnet_cifar.data import images
    from keras_resnet_cifar.deploy import edge
    runner = edge.TFLiteClassifier(sys.argv[1], num_threads=2)
    probabilities = runner.predict(images.load_file(sys.argv[2]).pixels)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
    print(json.dumps({"probabilities": probabilities.tolist(), "heavy": heavy}))
""")


@pytest.mark.slow
def test_edge_path_runs_with_tensorflow_unimportable(tiny, tmp_path):
    folder, model, pixels = tiny
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(_BLOCKER)
    (tmp_path / "run.py").write_text(_EDGE_SCRIPT)
    Image.fromarray(pixels[0]).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", pixels[:3])
    repo = str(Path(__file__).resolve().parents[2])  # this checkout's package
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path / "block"), repo])}
    for model_file in ("model_float32.tflite", "model_int8.tflite"):
        done = subprocess.run([sys.executable, str(tmp_path / "run.py"),
                               str(folder / model_file), str(tmp_path / "a.png")],
                              env=env, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["heavy"] == []
        if model_file == "model_float32.tflite":
            expected = model.predict(pixels[:1].astype(np.float32), verbose=0)
            np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    # The predict CLI too, on a .tflite, with files of both kinds.
    done = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.predict",
                           f"--model_path={folder / 'model_int8.tflite'}", "--num_threads=2",
                           "--json", "a.png", "b.npy"],
                          env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert [p["input"] for p in out["predictions"]] == ["a.png", "b.npy[0]", "b.npy[1]",
                                                         "b.npy[2]"]
    # A SavedModel (or a .keras file) needs TensorFlow: one line that says so and names
    # the alternative.
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    done = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.predict",
                           f"--model_path={tmp_path / 'sm'}", "--trust_savedmodel", "a.png"],
                          env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'sm'} is a SavedModel, which needs TensorFlow (not installed "
        "here); a .tflite model (e.g. model_int8.tflite of an export) runs without it."]
    # The blocker works: TensorFlow really is unimportable there.
    blocked = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env,
                             capture_output=True, text=True)
    assert blocked.returncode != 0 and "not installed on this edge device" in blocked.stderr
