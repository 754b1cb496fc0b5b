"""Export: TF Serving layout, atomicity, cleanup, signatures, fresh-process reload, parity.

One tiny model (resnet8, random weights, a fake run directory) is exported once
for the module, with synthetic calibration/parity data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from keras_resnet_cifar.data import datasets
from keras_resnet_cifar.deploy import contract, edge, exporter, predictor, seal, sources, tflite
from keras_resnet_cifar.models import arch, networks
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _listing(folder: Path) -> list[str]:
    """Everything in ``folder`` but the export lock (which stays on purpose, holding the
    last exporter's process id)."""
    return sorted(p.name for p in folder.iterdir() if p.name != exporter.LOCK)


def _small_data(real=False) -> sources.EvalData:
    data = datasets.synthetic(200, 64, seed=1)
    return sources.EvalData(calibration=data.train.images[:32], test_images=data.test.images,
                           test_labels=data.test.labels, description="synthetic (test)",
                           real=real)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A fake finished training run: model.keras, config.json, metrics.json."""
    run = tmp_path_factory.mktemp("run")
    model = networks.build_model("resnet8")
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"model": "resnet8", "seed": 0,
                                                 "dataset": "synthetic"}))
    (run / "metrics.json").write_text(json.dumps({"model": "resnet8", "test_accuracy": 0.5,
                                                  "test_loss": 1.2, "eval_set": "test"}))
    return run


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    """(export_dir, version folder, model card, the source) of one export."""
    out = tmp_path_factory.mktemp("exports")
    source = sources.load_source(run_dir)
    done = exporter.export(source, out, name="tiny", data=_small_data(real=True),
                           parity_images=64, latency_runs=2)
    # What export returns is what it wrote.
    assert done.parity == json.loads((done.folder / contract.PARITY).read_text())
    assert done.card == json.loads((done.folder / contract.MODEL_CARD).read_text())
    return out, done.folder, done.card, source


def test_tf_serving_layout_and_model_card(exported, run_dir):
    out, folder, card, source = exported
    assert folder == out / "tiny" / "1"
    assert _listing(out / "tiny") == ["1"]  # no temp left
    names = {p.name for p in folder.iterdir()}
    assert {"saved_model.pb", "variables", "model_card.json", "parity.json",
            "model_float32.tflite", "model_float16.tflite", "model_dynamic_range.tflite",
            "model_int8.tflite", "assets.extra"} <= names
    on_disk = json.loads((folder / "model_card.json").read_text())
    assert on_disk == card
    assert card["class_names"] == list(CIFAR10_CLASSES)
    assert card["architecture"] == "resnet8"
    assert card["params_trainable"] == networks.count_trainable_params(source.keras_model)
    assert card["test_accuracy"] == 0.5 and card["test_accuracy_eval_set"] == "test"
    assert card["source"]["kind"] == "run_dir"
    assert card["source"]["config"]["model"] == "resnet8"
    assert card["licence"] is None
    assert card["tflite"]["int8"]["input_dtype"] == "uint8"
    assert card["tflite"]["int8"]["input_quantization"] == {"scale": 1.0, "zero_point": 0}
    assert card["tflite"]["float32"]["input_dtype"] == "float32"
    for info in card["tflite"].values():  # built-in ops only: no Flex, no custom
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in info["ops"])


def test_next_export_takes_the_next_version(exported, tmp_path):
    out, folder, _, source = exported
    assert exporter.next_version(out / "tiny") == 2
    assert exporter.next_version(tmp_path / "nothing") == 1


def test_parity_report(exported):
    _, folder, _, _ = exported
    report = json.loads((folder / "parity.json").read_text())
    rows = report["variants"]
    assert set(rows) == {"keras", "saved_model", "tflite_float32", "tflite_float16",
                         "tflite_dynamic_range", "tflite_int8"}
    assert report["images"] == 64
    for name in ("saved_model", "tflite_float32"):
        assert rows[name]["top1_agreement"] == 1.0, name
        assert rows[name]["max_prob_diff"] < 1e-4, name
    for row in rows.values():
        assert row["latency_ms"]["median"] > 0
    # Accuracy is measured against the labels: recompute the Keras row's.
    _, _, _, source = exported
    labels = _small_data().test_labels
    keras_top = source.keras_model.predict(_small_data().test_images.astype(np.float32),
                                           verbose=0).argmax(1)
    assert rows["keras"]["accuracy"] == pytest.approx(np.mean(keras_top == labels))
    assert report["reference"] == "keras"
    assert rows["tflite_float32"]["size_bytes"] == (folder / "model_float32.tflite").stat().st_size


def test_float16_model_halves_the_weights_and_agrees(exported):
    """The float16 TFLite model: its row in the report, and predict runs it as the others."""
    _, folder, card, source = exported
    rows = json.loads((folder / "parity.json").read_text())["variants"]
    half, full = rows["tflite_float16"], rows["tflite_float32"]
    assert half["file"] == "model_float16.tflite"
    assert half["size_bytes"] < 0.6 * full["size_bytes"]  # float16 weights, not float32
    assert half["max_prob_diff"] < 1e-2 and half["top1_agreement"] >= 0.95
    assert card["tflite"]["float16"]["input_dtype"] == "float32"
    assert "DEQUANTIZE" in card["tflite"]["float16"]["ops"]  # the weights are stored float16
    images = _small_data().test_images[:8]
    expected = source.keras_model.predict(images.astype(np.float32), verbose=0)
    model = predictor.load(folder / "model_float16.tflite")
    assert model.kind == "tflite"
    np.testing.assert_allclose(model.predict(images), expected, atol=1e-2)


def test_warmup_requests_replay_against_the_saved_model(exported):
    """assets.extra/tf_serving_warmup_requests: PredictionLog records TF Serving can replay."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from keras_resnet_cifar.deploy import serving, tf_serving

    _, folder, card, _ = exported
    assert card["tf_serving_warmup"]["file"] == contract.WARMUP_FILE
    assert contract.WARMUP_FILE in card[contract.FILES]
    loaded = tf.saved_model.load(str(folder))
    classifier = serving.load_classifier(folder)
    images = _small_data().test_images
    sizes = []
    for record in tf.data.TFRecordDataset(str(folder / contract.WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "tiny"
        assert request.model_spec.signature_name == contract.DEFAULT_SIGNATURE
        assert list(request.inputs) == [contract.INPUT_KEY]
        pixels = tf.make_ndarray(request.inputs[contract.INPUT_KEY])
        assert pixels.dtype == np.uint8 and pixels.shape[1:] == (32, 32, 3)
        # Real-shaped inputs: the export's own test images, repeated to fill the batch.
        np.testing.assert_array_equal(pixels, images[np.arange(len(pixels)) % len(images)])
        # Replayed as TF Serving replays it: the named signature on the named inputs.
        signature = loaded.signatures[request.model_spec.signature_name]
        outputs = signature(**{k: tf.constant(tf.make_ndarray(v))
                               for k, v in request.inputs.items()})
        np.testing.assert_allclose(outputs["probabilities"].numpy(),
                                   classifier.predict(pixels), atol=1e-6)
        sizes.append(len(pixels))
    assert sizes == list(tf_serving.BATCH_SIZES) == card["tf_serving_warmup"]["batch_sizes"]


def test_saved_model_cli_shows_exactly_the_signatures(exported):
    _, folder, _, _ = exported
    cli = Path(sys.executable).with_name("saved_model_cli")
    out = subprocess.run([str(cli), "show", "--all", "--dir", str(folder)], env=ENV,
                         capture_output=True, text=True, check=True).stdout
    signatures = re.findall(r"signature_def\['(\w+)'\]", out)
    assert sorted(signatures) == ["__saved_model_init_op", "serving_default", "serving_float32"]
    blocks = {name: out.split(f"signature_def['{name}']")[1].split("signature_def[")[0]
              for name in ("serving_default", "serving_float32")}
    for name, dtype in (("serving_default", "DT_UINT8"), ("serving_float32", "DT_FLOAT")):
        block = blocks[name]
        tensors = re.findall(r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+"
                             r"shape: \(([-\d, ]*)\)", block)
        assert sorted(tensors) == sorted([
            ("inputs", "image", dtype, "-1, 32, 32, 3"),
            ("outputs", "probabilities", "DT_FLOAT", "-1, 10"),
            ("outputs", "class_id", "DT_INT64", "-1"),
            ("outputs", "class_name", "DT_STRING", "-1")]), name
        assert "Method name is: tensorflow/serving/predict" in block


# Run as TF Serving would: no keras_resnet_cifar (and no Keras), just TensorFlow.
_FRESH = textwrap.dedent("""
    import json, sys
    sys.modules["keras_resnet_cifar"] = None  # as on a TF Serving host
    sys.modules["keras"] = None
    try:
        import keras_resnet_cifar
        raise SystemExit("keras_resnet_cifar is importable")
    except ImportError:
        pass
    import numpy as np
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    pixels = np.load(sys.argv[2])
    out = {}
    for name, dtype in (("serving_default", tf.uint8), ("serving_float32", tf.float32)):
        result = loaded.signatures[name](image=tf.constant(pixels.astype(dtype.as_numpy_dtype)))
        out[name] = {k: v.numpy().tolist() if v.dtype != tf.string
                     else [s.decode() for s in v.numpy()] for k, v in result.items()}
    print(json.dumps(out))
""")


def test_saved_model_runs_in_a_fresh_process_without_the_package(exported, tmp_path):
    _, folder, _, source = exported
    pixels = _small_data().test_images[:8]
    np.save(tmp_path / "pixels.npy", pixels)
    (tmp_path / "load.py").write_text(_FRESH)
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", str(tmp_path / "load.py"), str(folder),
                           str(tmp_path / "pixels.npy")], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    expected = source.keras_model.predict(pixels.astype(np.float32), verbose=0)
    for name in ("serving_default", "serving_float32"):
        got = out[name]
        np.testing.assert_allclose(got["probabilities"], expected, atol=1e-5)
        assert got["class_id"] == expected.argmax(1).tolist()
        assert got["class_name"] == [CIFAR10_CLASSES[i] for i in expected.argmax(1)]


def test_interrupted_export_leaves_nothing(run_dir, tmp_path, monkeypatch):
    source = sources.load_source(run_dir)
    scratch = []

    def boom(model, folder):  # inside the converter's scratch folder, mid-conversion
        scratch.append(Path(folder))
        raise KeyboardInterrupt

    monkeypatch.setattr(tflite, "_saved_model", boom)
    with pytest.raises(KeyboardInterrupt):
        exporter.export(source, tmp_path, name="tiny", data=_small_data(), parity_images=0)
    assert _listing(tmp_path / "tiny") == []  # no version, no hidden temp
    assert scratch and scratch[0].parent.parent == tmp_path / "tiny"  # not in /tmp
    assert not scratch[0].exists()


def test_next_export_removes_what_a_killed_one_left(run_dir, tmp_path):
    """A SIGKILLed export leaves .N.*.tmp behind; the next one (holding the lock) removes it."""
    root = tmp_path / "tiny"
    stale = root / ".1.abc123.tmp"
    (stale / "krc_tflite_x").mkdir(parents=True)
    (root / ".notes.tmp").write_text("not an export's")  # not ours: left alone
    source = sources.load_source(run_dir)
    done = exporter.export(source, tmp_path, name="tiny", data=_small_data(),
                           variants=["float32"], parity_images=0)
    assert done.folder == root / "1" and not stale.exists() and done.parity is None
    assert _listing(root) == [".notes.tmp", "1"]


def test_a_second_export_to_the_same_name_is_refused_while_one_runs(run_dir, tmp_path):
    import fcntl

    root = tmp_path / "tiny"
    root.mkdir()
    with open(root / exporter.LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running export holds it
        with pytest.raises(UserError, match="Another export to .* is running"):
            exporter.export(sources.load_source(run_dir), tmp_path, name="tiny",
                             data=_small_data(), parity_images=0)
    assert _listing(root) == []


def test_a_saved_model_exports_again(exported, tmp_path):
    """A SavedModel is a source like the others: copied unchanged, converted, compared."""
    _, folder, card, source = exported
    again = sources.load_source(folder)
    assert again.keras_model is None and again.model.kind == "saved_model"
    done = exporter.export(again, tmp_path, name="copy", data=_small_data(real=True),
                           variants=["float32", "int8"], parity_images=64, latency_runs=2)
    new, new_card = done.folder, done.card
    assert (new / "saved_model.pb").read_bytes() == (folder / "saved_model.pb").read_bytes()
    assert (new_card["architecture"], new_card["params_trainable"]) == (
        card["architecture"], card["params_trainable"])
    assert new_card["source"]["kind"] == "saved_model"
    assert new_card["source"]["source"]["kind"] == "run_dir"  # the provenance travels on
    report = json.loads((new / "parity.json").read_text())
    assert set(report["variants"]) == {"saved_model", "tflite_float32", "tflite_int8"}
    assert report["reference"] == "saved_model"
    assert report["variants"]["tflite_float32"]["top1_agreement"] == 1.0
    assert report["variants"]["tflite_float32"]["max_prob_diff"] < 1e-4
    for info in new_card["tflite"].values():
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in info["ops"])


def test_existing_version_is_refused_and_untouched(exported):
    out, folder, _, source = exported
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(UserError, match="already exists"):
        exporter.export(source, out, name="tiny", version=1, data=_small_data())
    assert sorted(p.name for p in folder.iterdir()) == before
    assert _listing(out / "tiny") == ["1"]


def test_unwritable_place_is_refused(run_dir, tmp_path):
    source = sources.load_source(run_dir)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="Cannot create"):
        exporter.export(source, blocker / "exports", name="tiny", data=_small_data())


def test_bad_sources(tmp_path, run_dir):
    """What export refuses beyond the predictor's own refusals (tests/deploy/test_predictor.py)."""
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(UserError, match="already an export"):
        sources.load_source(tmp_path / "m.tflite")
    with pytest.raises(UserError, match="got -1") as e:  # the argument and its value
        exporter.export(sources.load_source(run_dir), tmp_path, name="t",
                         data=_small_data(), parity_images=-1)
    assert e.value.argument == "parity_images"


def test_models_made_from_reference_weights_carry_their_licence(tmp_path):
    from keras_resnet_cifar.models import reference_weights

    model = networks.build_model("resnet8", mean=arch.IMAGENET_MEAN, std=arch.IMAGENET_STD)
    model.save(tmp_path / "imported.keras")
    assert sources.load_source(tmp_path / "imported.keras").licence_note == \
        reference_weights.LICENCE_NOTE


def _hostile_saved_model(folder: Path, target: Path, *, float_signature: bool = True) -> Path:
    """A SavedModel with this project's signatures whose graph also writes ``target``."""
    import tensorflow as tf

    def outputs(image):
        n = tf.shape(image)[0]
        tf.io.write_file(str(target), "written by the SavedModel's own graph")
        return {"probabilities": tf.fill([n, 10], 0.1), "class_id": tf.zeros([n], tf.int64),
                "class_name": tf.fill([n], "airplane")}

    module = tf.Module()
    module.serve = tf.function(outputs, input_signature=[
        tf.TensorSpec((None, 32, 32, 3), tf.uint8, name="image")])
    module.serve_float = tf.function(outputs, input_signature=[
        tf.TensorSpec((None, 32, 32, 3), tf.float32, name="image")])
    signatures = {contract.DEFAULT_SIGNATURE: module.serve}
    if float_signature:
        signatures[contract.FLOAT_SIGNATURE] = module.serve_float
    tf.saved_model.save(module, str(folder), signatures=signatures)
    return folder


def test_the_model_card_records_its_writer_and_every_file(exported):
    _, folder, card, _ = exported
    assert card[contract.WRITTEN_BY] == contract.WRITER
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                     if p.is_file() and p.name != contract.MODEL_CARD)
    assert sorted(card[contract.FILES]) == on_disk
    assert {"saved_model.pb", "model_int8.tflite", "parity.json"} <= set(on_disk)
    for name, digest in card[contract.FILES].items():
        assert contract.sha256(folder / name) == digest
    assert contract.saved_model_problem(folder) is None


def test_a_saved_model_from_elsewhere_runs_only_with_trust_savedmodel(exported, tmp_path):
    # Issue 16, item 6: predict on a SavedModel whose signature calls tf.io.write_file
    # wrote the file.
    _, folder, _, _ = exported
    target = tmp_path / "pwned.txt"
    hostile = _hostile_saved_model(tmp_path / "hostile", target)
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    done = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.predict",
                           f"--model_path={hostile}", "a.png"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {hostile} has no model_card.json of keras_resnet_cifar.export. A SavedModel "
        "is a program (its graph runs whatever operations it holds, file writes included): "
        "load it only if you trust where it came from, with --trust_savedmodel."]
    assert not target.exists()
    # A card copied from a real export does not vouch for another graph ...
    (hostile / contract.MODEL_CARD).write_bytes((folder / contract.MODEL_CARD).read_bytes())
    with pytest.raises(UserError, match="has a saved_model.pb that differs from the sha256"):
        predictor.load(hostile)
    # ... nor does an export's own card once its graph was replaced.
    replaced = tmp_path / "replaced"
    shutil.copytree(folder, replaced)
    (replaced / "saved_model.pb").write_bytes((hostile / "saved_model.pb").read_bytes())
    for load in (predictor.load, sources.load_source):
        with pytest.raises(UserError, match="differs from the sha256 its model_card.json"):
            load(replaced)
    # A card that records nothing (an older export, or a hand-written one) neither.
    (hostile / contract.MODEL_CARD).write_text(json.dumps({"name": "x"}))
    with pytest.raises(UserError, match="records no sha256 of saved_model.pb"):
        predictor.resolve(hostile)
    assert not target.exists()
    # The opt-in is what it says: the graph runs.
    predictor.load(hostile, trust_savedmodel=True).predict(np.zeros((1, 32, 32, 3), np.uint8))
    assert target.exists()


def test_a_damaged_tflite_file_is_refused_when_its_card_is_present(exported, tmp_path,
                                                                   monkeypatch):
    # Issue 16, item 7: 31 of 40 bit-flipped copies loaded silently, 4 answered wrongly.
    _, folder, _, _ = exported
    copy = tmp_path / "1"
    shutil.copytree(folder, copy)
    model = copy / "model_float32.tflite"
    assert edge.TFLiteClassifier(model).predict(np.zeros((1, 32, 32, 3), np.uint8)).shape == \
        (1, 10)
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    model.write_bytes(bytes(raw))
    for load in (edge.TFLiteClassifier, predictor.load):
        with pytest.raises(UserError, match="model_float32.tflite does not match the sha256 "
                                            "its model card records"):
            load(model)
    # Without a card there is nothing to check against; what LiteRT then fails on is
    # one line, not a RuntimeError traceback.
    (copy / contract.MODEL_CARD).unlink()
    runner = edge.TFLiteClassifier(folder / "model_float32.tflite")

    def fail():
        raise RuntimeError("Input tensor 21 lacks data")

    monkeypatch.setattr(runner._interpreter, "invoke", fail)
    with pytest.raises(UserError, match=r"model_float32.tflite failed to run \(Input tensor "
                                        r"21 lacks data\): the model file is damaged"):
        runner.predict(np.zeros((2, 32, 32, 3), np.uint8))


def test_a_saved_model_without_the_float_signature_is_one_line(tmp_path):
    # Issue 16, item 10: a KeyError traceback from the TFLite conversion.
    source = _hostile_saved_model(tmp_path / "sm", tmp_path / "x.txt", float_signature=False)
    with pytest.raises(UserError, match="has no serving_float32 signature: not a SavedModel "
                                        "of keras_resnet_cifar.export"):
        sources.load_source(source, trust_savedmodel=True)
    with pytest.raises(UserError, match="has no serving_float32 signature to convert"):
        tflite.convert(source, "float32")
    done = _cli(f"--model_path={source}", "--trust_savedmodel", "--out=ex",
                "--dataset=synthetic", "--parity_images=0", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {source} has no "
                                                           "serving_float32 signature")
    assert not (tmp_path / "ex").exists() or _listing(tmp_path / "ex" / "sm") == []


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "keras_resnet_cifar.export", *args],
                          cwd=cwd, env=ENV, capture_output=True, text=True)


@pytest.mark.slow
def test_cli_errors_are_one_line_and_leave_nothing(exported, tmp_path):
    out, _, _, _ = exported
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "notes.txt").write_text("not weights")
    for args, message in (
            (("--model_path=empty_run",), "has no model.keras"),
            (("--weights=notes.txt",), "notes.txt exists but is not a .npz weights file"),
            (("--model_path=empty_run", "--version=0"), "--version must be an integer in [1, "),
            (("--model_path=empty_run", "--latency_runs=-1"), "--latency_runs must be >= 0")):
        done = _cli(*args, "--out=ex", cwd=tmp_path)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines()[-1].startswith("error: ")
        assert message in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "ex").exists()


@pytest.mark.slow
def test_cli_exports_a_keras_file(run_dir, tmp_path):
    done = _cli(f"--model_path={run_dir / 'model.keras'}", "--out=ex", "--name=m",
                "--tflite=float32", "--parity_images=32", "--latency_runs=2",
                "--dataset=synthetic", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tflite_float32" in done.stdout and "exported resnet8" in done.stdout
    assert _listing(tmp_path / "ex" / "m") == ["1"]
    # The converter's own lines are hidden.
    assert not re.search(r"^[IWE]0000 ", done.stderr, re.M), done.stderr


@pytest.mark.slow
def test_cli_terminated_mid_export_cleans_up(run_dir, tmp_path):
    """SIGTERM (what schedulers send) mid-export: exit 143, no temporary folder anywhere."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "keras_resnet_cifar.export", f"--model_path={run_dir}",
         "--out=ex", "--name=m", "--dataset=synthetic", "--parity_images=0"],
        cwd=tmp_path, env={**ENV, "TMPDIR": str(tmp_path)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if list((tmp_path / "ex" / "m").glob(".1.*.tmp/krc_tflite_*")):
                break  # converting, with its scratch folder inside the version's temp
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    assert _listing(tmp_path / "ex" / "m") == []
    assert not list(tmp_path.glob("krc_tflite_*"))


_MIRRORED = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_resnet_cifar.data import datasets
    from keras_resnet_cifar.models import networks
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    data = datasets.synthetic(64, 16, seed=0)
    with strategy.scope():
        model = networks.build_model("resnet8")
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.train.images.astype("float32"), data.train.labels, batch_size=32,
              epochs=1, verbose=0)
    model.save(sys.argv[1] + "/model.keras")
    np.save(sys.argv[1] + "/pixels.npy", data.test.images)
""")


@pytest.mark.slow
def test_a_run_trained_in_mixed_bfloat16_exports_evaluates_and_serves_in_float32(tmp_path):
    """Issue 27: TFLite has no bfloat16 kernels; the export computes in float32, same weights."""
    import keras
    import tensorflow as tf

    from keras_resnet_cifar.deploy import serving

    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.train",
                           f"--flagfile={REPO / 'flags' / 'smoke.cfg'}",
                           "--mixed_precision=mixed_bfloat16", f"--model_dir={run}"],
                          env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    trained = keras.saving.load_model(run / "model.keras", compile=False)
    assert trained.get_layer("probabilities").compute_dtype == "float32"  # softmax
    assert {layer.compute_dtype for layer in trained.layers} >= {"bfloat16"}
    source = sources.load_source(run)
    assert source.provenance["computes_float32_trained_in"] == "mixed_bfloat16"
    assert {layer.compute_dtype for layer in source.keras_model.layers} == {"float32"}
    data = _small_data()
    export = exporter.export(source, tmp_path / "exports", name="bf16", data=data,
                             parity_images=64, latency_runs=2)
    assert export.card["source"]["computes_float32_trained_in"] == "mixed_bfloat16"
    float_sig = tf.saved_model.load(str(export.folder)).signatures[contract.FLOAT_SIGNATURE]
    assert [s.dtype for s in float_sig.structured_input_signature[1].values()] == [tf.float32]
    assert float_sig.structured_outputs["probabilities"].dtype == tf.float32
    rows = export.parity["variants"]
    for name in ("saved_model", "tflite_float32"):
        assert rows[name]["top1_agreement"] == 1.0 and rows[name]["max_prob_diff"] < 1e-4, name
    assert rows["tflite_int8"]["top1_agreement"] > 0  # calibrated, converted and run
    assert export.card["tflite"]["int8"]["input_dtype"] == "uint8"
    pixels = data.test_images
    served = serving.load_classifier(export.folder)(pixels)
    as_trained = trained.predict(pixels.astype(np.float32), verbose=0)
    np.testing.assert_allclose(served, as_trained, atol=0.05)  # bfloat16: 8 bits of mantissa
    evaluated = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.evaluate",
                                f"--model_path={run}", "--dataset=synthetic",
                                "--synthetic_test_size=64"],
                               env=ENV, capture_output=True, text=True)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "test accuracy" in evaluated.stdout + evaluated.stderr


@pytest.mark.slow
def test_model_trained_under_mirrored_strategy_exports_and_runs_on_one_cpu(tmp_path):
    """Trained on 2 replicas in a subprocess; exported and run here, on one CPU."""
    import keras
    import tensorflow as tf

    from keras_resnet_cifar.deploy import edge, serving

    (tmp_path / "train.py").write_text(_MIRRORED)
    done = subprocess.run([sys.executable, str(tmp_path / "train.py"), str(tmp_path)],
                          env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(tf.config.list_logical_devices("CPU")) == 1
    pixels = np.load(tmp_path / "pixels.npy")
    # The reference: the saved model, loaded and run here. (Not model.predict under the
    # strategy: Keras BatchNormalization's moving statistics use aggregation="none",
    # so each replica keeps its own copy and a distributed predict mixes them.)
    expected = keras.saving.load_model(tmp_path / "model.keras").predict(
        pixels.astype(np.float32), verbose=0)
    source = sources.load_source(tmp_path / "model.keras")
    folder = exporter.export(source, tmp_path / "exports", name="mirrored",
                             data=_small_data(), variants=["float32"], parity_images=0).folder
    np.testing.assert_allclose(serving.load_classifier(folder)(pixels), expected, atol=1e-5)
    runner = edge.TFLiteClassifier(folder / "model_float32.tflite")
    np.testing.assert_allclose(runner.predict(pixels), expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.realdata
def test_int8_accuracy_on_real_images(reference_dir, cifar10_local):
    """Reference ResNet-20 on 2,000 original test images: int8 within 0.5 points of float."""
    from keras_resnet_cifar.deploy import edge
    from keras_resnet_cifar.models import reference_weights

    model = reference_weights.reference_model(
        reference_weights.load_state_dict(reference_dir / "resnet20.npz"))
    data = datasets.read_local(str(cifar10_local))
    calibration = tflite.representative_images(data.train.images, 300, seed=0)
    images, labels = data.test.images[::5], data.test.labels[::5]  # 2,000 images
    keras_probs = model.predict(images.astype(np.float32), batch_size=250, verbose=0)
    float_probs = edge.TFLiteClassifier(tflite.convert(model, "float32")).predict(images)
    int8 = edge.TFLiteClassifier(tflite.convert(model, "int8", calibration))
    assert int8.input_dtype == np.uint8
    int8_probs = int8.predict(images)
    acc = lambda p: float(np.mean(p.argmax(1) == labels))
    assert np.mean(float_probs.argmax(1) == keras_probs.argmax(1)) >= 0.999
    assert acc(keras_probs) > 0.89  # the reference scores 91.73% on all 10,000
    assert acc(float_probs) - acc(int8_probs) <= 0.005, (acc(float_probs), acc(int8_probs))


def test_low_int8_agreement_is_explained_by_the_near_ties():
    """A briefly trained model's int8 export can agree with Keras on few images: the table
    says how many of the disagreements are near ties that quantisation tips either way."""
    from keras_resnet_cifar.deploy import parity

    reference = np.array([[0.500, 0.495, 0.005], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1]])
    int8 = np.array([[0.48, 0.51, 0.01], [0.05, 0.9, 0.05], [0.2, 0.7, 0.1]])
    row = parity.compare(reference, int8)
    assert (row["disagreements"], row["close_disagreements"]) == (2, 1)
    table = parity.format_table({"images": 3, "variants": {
        "tflite_int8": {**row, "size_bytes": None, "latency_ms": None}}})
    assert "note: tflite_int8 disagrees on 2 images; 1 of them are near ties" in table
    agreeing = parity.compare(reference, reference)
    assert "note:" not in parity.format_table({"images": 3, "variants": {
        "keras": {**agreeing, "size_bytes": None, "latency_ms": None}}})


def test_predict_says_an_int8_models_probabilities_are_quantised(exported, tmp_path):
    _, folder, _, _ = exported
    batch = tmp_path / "batch.npy"
    np.save(batch, _small_data().test_images[:2])
    for name, quantised in (("model_int8.tflite", True), ("model_float32.tflite", False)):
        r = subprocess.run([sys.executable, "-m", "keras_resnet_cifar.predict",
                            f"--model_path={folder / name}", str(batch)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        said = (f"({name} is quantised: its probabilities come in steps of 0.0039 (1/256), "
                "so a confident answer shows as 99.6%, not 100%)")
        assert (said in r.stdout) == quantised, r.stdout


# --- Issue 29: trust that cannot be forged ---------------------------------------------

def test_a_card_whose_sha256_match_a_hostile_graph_does_not_vouch_for_it(exported, tmp_path):
    # Issue 29: a SavedModel whose graph writes a file, shipped with a card recording its
    # own sha256, wrote that file under predict, evaluate and benchmark.
    _, folder, _, _ = exported
    target = tmp_path / "pwned.txt"
    hostile = _hostile_saved_model(tmp_path / "hostile", target)
    forged = {**json.loads((folder / contract.MODEL_CARD).read_text()),
              contract.FILES: contract.file_hashes(hostile)}
    forged.pop(seal.SEAL)
    (hostile / contract.MODEL_CARD).write_text(json.dumps(forged))
    with pytest.raises(UserError, match="has a model card without this machine's seal"):
        predictor.resolve(hostile)
    # A seal copied from a real export, or one made with another key, neither.
    forged[seal.SEAL] = json.loads((folder / contract.MODEL_CARD).read_text())[seal.SEAL]
    (hostile / contract.MODEL_CARD).write_text(json.dumps(forged))
    with pytest.raises(UserError, match="does not match its model card's seal"):
        predictor.load(hostile)
    forged[seal.SEAL] = {"algorithm": seal.ALGORITHM, "key_id": "0" * 16, "tag": "0" * 64}
    (hostile / contract.MODEL_CARD).write_text(json.dumps(forged))
    with pytest.raises(UserError, match="sealed with another key than this user's"):
        sources.load_source(hostile)
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    for command, args in (("predict", ["a.png"]), ("evaluate", ["--dataset=synthetic"]),
                          ("benchmark", ["--dataset=synthetic"])):
        done = subprocess.run([sys.executable, "-m", f"keras_resnet_cifar.{command}",
                               f"--model_path={hostile}", *args], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(
            f"error: {hostile} has a model card sealed with another key"), done.stderr
    assert not target.exists()


def test_the_seal_covers_every_file_and_the_card_and_only_this_key(exported, tmp_path,
                                                                   monkeypatch):
    _, folder, _, _ = exported
    assert contract.saved_model_problem(folder) is None
    copy = tmp_path / "1"
    shutil.copytree(folder, copy)
    assert contract.saved_model_problem(copy) is None  # a copy on this machine still loads
    # A class name changed in the card, or a file added beside the SavedModel: refused.
    card = json.loads((copy / contract.MODEL_CARD).read_text())
    (copy / contract.MODEL_CARD).write_text(json.dumps({**card, "class_names": ["x"] * 10}))
    assert "does not match its model card's seal" in contract.saved_model_problem(copy)
    (copy / contract.MODEL_CARD).write_text(json.dumps(card))
    (copy / "variables" / "extra").write_bytes(b"x")
    assert "does not match its model card's seal" in contract.saved_model_problem(copy)
    (copy / "variables" / "extra").unlink()
    assert contract.saved_model_problem(copy) is None
    # On another machine (another user's key, or none), the seal vouches for nothing.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "elsewhere"))
    assert "sealed with another key" in contract.saved_model_problem(copy)
    assert not (tmp_path / "elsewhere").exists()  # checking never makes a key


def test_the_key_is_private_and_never_read_through_a_link(tmp_path, monkeypatch):
    import stat as stat_

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    made = seal.seal({"name": "x"}, {"saved_model.pb": "0" * 64})
    key = seal.key_path()
    assert key == tmp_path / "config" / "keras-resnet-cifar" / "export.key"
    assert stat_.S_IMODE(key.stat().st_mode) == 0o600
    assert stat_.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert seal.seal({"name": "x"}, {"saved_model.pb": "0" * 64}) == made  # the same key
    assert [p.name for p in key.parent.iterdir()] == ["export.key"]  # no temporary left
    key.chmod(0o644)
    with pytest.raises(UserError, match="can be read by other users"):
        seal.load_key()
    key.chmod(0o600)
    moved = tmp_path / "elsewhere.key"
    key.rename(moved)
    key.symlink_to(moved)
    with pytest.raises(UserError, match="is a symbolic link: refused"):
        seal.load_key()


def test_export_never_copies_a_link_out_of_the_saved_model(exported, tmp_path):
    # Issue 29: re-exporting a model whose assets/ held a symlink copied its target, a
    # system file outside the model, into the new export.
    _, folder, _, _ = exported
    secret = tmp_path / "secret.txt"
    secret.write_text("a file outside the model")
    copy = tmp_path / "src" / "1"
    shutil.copytree(folder, copy)
    (copy / "assets").mkdir(exist_ok=True)
    (copy / "assets" / "vocab.txt").symlink_to(secret)
    # Its own card no longer vouches for it (a link is not an export's file) ...
    with pytest.raises(UserError, match="assets/vocab.txt is a symbolic link"):
        sources.load_source(copy)
    # ... and trusted by hand, the copy refuses the link instead of following it.
    source = sources.load_source(copy, trust_savedmodel=True)
    with pytest.raises(UserError, match="assets/vocab.txt is a symbolic link"):
        exporter.export(source, tmp_path / "out", name="again", data=_small_data(),
                        variants=[], parity_images=0)
    assert _listing(tmp_path / "out" / "again") == []
