"""The benchmark command on a tiny model (its libraries: tests/analysis/test_speed*.py, test_peer.py).

No timing assertions: figures depend on the machine and its load.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_resnet_cifar.analysis import speed_table
from keras_resnet_cifar.models import networks

REPO = Path(__file__).resolve().parents[1]
TINY = ["--models=resnet8", "--batch_size=32", "--steps=2", "--repeats=2",
        "--synthetic_train_size=128", "--synthetic_test_size=64", "--pipeline_batches=3",
        "--inference_runs=3"]


def _benchmark(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "keras_resnet_cifar.benchmark", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A SavedModel folder holding a float32 .tflite too, of an untrained resnet8."""
    from keras_resnet_cifar.deploy import serving, tflite
    from keras_resnet_cifar.data.labels import CIFAR10_CLASSES

    folder = tmp_path_factory.mktemp("export") / "1"
    model = networks.build_model("resnet8")
    serving.save(model, folder, CIFAR10_CLASSES)
    (folder / "model_float32.tflite").write_bytes(tflite.convert(model, "float32"))
    return folder


@pytest.fixture
def fake_peer(tmp_path):
    """A stand-in for the PyTorch peer: prints its line; 60 img/s in --mode channels_last,
    half as fast with --precision bfloat16."""
    script = tmp_path / "peer.py"
    script.write_text("import sys\nmode = sys.argv[sys.argv.index('--mode') + 1]\n"
                      "if mode not in ('default', 'channels_last'):\n"
                      "    sys.exit('peer.py: error: argument --mode: invalid choice: %r' % mode)\n"
                      "rate = 60.0 if mode == 'channels_last' else 50.0\n"
                      "if sys.argv[-2:] == ['--precision', 'bfloat16']: rate /= 2\n"
                      "print('peer=%s params=1 threads=1 img/s=%s' % (sys.argv[2], rate))\n")
    return script


def test_cli_prints_every_figure_and_valid_json(tmp_path, fake_peer, exported):
    out = tmp_path / "bench.json"
    tflite_file = exported / "model_float32.tflite"
    r = _benchmark(*TINY, f"--peer={sys.executable}", f"--peer_script={fake_peer}",
                   "--peer_modes=default,channels_last", "--models=resnet8",
                   f"--model_path={exported},{tflite_file}", "--trust_savedmodel",
                   f"--out={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    table = r.stdout
    for text in ("machine: ", "TF_ENABLE_ONEDNN_OPTS=", "load average", "settings: batch 32",
                 "train resnet8 (img/s, 75,290 params)",
                 "peer  resnet8 (img/s, PyTorch, default)",
                 "peer  resnet8 (img/s, PyTorch, channels_last)",
                 "ratio resnet8 (project / peer channels_last)", "pairs:",
                 "project / PyTorch peer, median of A B pairs: resnet8",
                 "evaluate resnet8 (img/s)",
                 "input pipeline alone (img/s)", "input pipeline / fastest training",
                 f"saved_model:{exported.parent.name}/1 batch-1 (ms)",
                 "tflite:model_float32.tflite batch-1 (ms)",
                 "tflite:model_float32.tflite batch-128 (img/s)", f"wrote {out}"):
        assert text in table, text
    # Progress on stderr while it measures: each timed repeat and the peer after it.
    for text in ("resnet8: warm-up done", "resnet8: training repeat 1/2: ",
                 "resnet8: training repeat 2/2: ", "resnet8: peer (default): 50.0 img/s",
                 "resnet8: peer (channels_last): 60.0 img/s"):
        assert text in r.stderr, text
    report = json.loads(out.read_text())
    assert set(report) == {"machine", "settings", "training", "evaluation", "pipeline",
                           "inference"}
    for key in ("cpu", "cpu_cores", "tensorflow", "keras", "onednn", "load_average",
                "load_average_after", "date"):
        assert key in report["machine"], key
    train = report["training"]["resnet8"]
    assert train["params"] == 75_290 and train["replicas"] == 1
    assert len(train["images_per_sec"]["samples"]) == 2
    assert train["images_per_sec"]["min"] <= train["images_per_sec"]["median"] \
        <= train["images_per_sec"]["max"]
    assert "model" not in train  # data only
    assert train["peer"]["default"]["images_per_sec"]["samples"] == [50.0, 50.0]
    assert train["peer"]["channels_last"]["images_per_sec"]["samples"] == [60.0, 60.0]
    pairs = train["peer"]["channels_last"]["ratio"]["pairs"]
    assert pairs == pytest.approx([s / 60.0 for s in train["images_per_sec"]["samples"]])
    assert report["evaluation"]["resnet8"]["images_per_sec"]["median"] > 0
    assert report["pipeline"]["times_fastest_training"] > 0
    assert {e["kind"]: e["path"] for e in report["inference"].values()} == {
        "saved_model": str(exported), "tflite": str(tflite_file)}
    for entry in report["inference"].values():
        assert len(entry["latency_ms_batch1"]["samples"]) == 3
        assert entry["latency_ms_batch1"]["median"] > 0
        assert entry["images_per_sec_batch128"]["median"] > 0


def test_variants_alternate_repeat_by_repeat_against_the_peer_in_their_precision(fake_peer):
    r = _benchmark(*TINY, "--variants=float32,mixed_bfloat16", f"--peer={sys.executable}",
                   f"--peer_script={fake_peer}", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    from keras_resnet_cifar import environment

    assert report["machine"]["bfloat16_cpu_flags"] == environment.bfloat16_support()
    assert report["settings"]["variants"] == ["float32", "mixed_bfloat16"]
    f32, bf16 = report["training"]["resnet8 float32"], report["training"]["resnet8 mixed_bfloat16"]
    assert (f32["variant"], bf16["variant"]) == ("float32", "mixed_bfloat16")
    assert "ratio_to_first" not in f32 and bf16["ratio_to_first"]["of"] == "float32"
    assert bf16["ratio_to_first"]["pairs"] == pytest.approx(
        [b / f for b, f in zip(bf16["images_per_sec"]["samples"],
                               f32["images_per_sec"]["samples"])])
    assert f32["peer"]["channels_last"]["images_per_sec"]["samples"] == [60.0, 60.0]
    assert bf16["peer"]["channels_last"]["images_per_sec"]["samples"] == [30.0, 30.0]
    assert bf16["peer"]["channels_last"]["precision"] == "mixed_bfloat16"
    assert set(report["evaluation"]) == set(report["training"])
    # In turn: repeat 1 of each variant, the peer in both precisions, then repeat 2.
    lines = [line.split("] ", 1)[-1] for line in r.stderr.splitlines()]
    order = [next(i for i, line in enumerate(lines) if line.startswith(text)) for text in (
        "resnet8 float32: training repeat 1/2", "resnet8 mixed_bfloat16: training repeat 1/2",
        "resnet8: peer (channels_last): 60.0", "resnet8: peer (channels_last, mixed_bfloat16): "
        "30.0", "resnet8 float32: training repeat 2/2")]
    assert order == sorted(order)
    table = speed_table.format_table(report)
    for text in ("bfloat16 CPU flags: ", "variants in turn: float32, mixed_bfloat16",
                 "ratio resnet8 mixed_bfloat16 / float32",
                 "peer  resnet8 mixed_bfloat16 (img/s, PyTorch, channels_last, bfloat16 "
                 "autocast)"):
        assert text in table, text


def test_bfloat16_support_reads_the_cpu_flags(tmp_path):
    from keras_resnet_cifar import environment

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: X\nflags\t\t: fpu avx2 amx_tile avx512_bf16 sse\n")
    assert environment.bfloat16_support(cpuinfo) == ["avx512_bf16", "amx_tile"]
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f\n")
    assert environment.bfloat16_support(cpuinfo) == []
    assert environment.bfloat16_support(tmp_path / "missing") is None


def test_json_prints_only_json_and_model_path_alone_trains_nothing(exported, tmp_path):
    """--json: JSON on stdout, nothing else."""
    model = tmp_path / "m.keras"
    networks.build_model("resnet8").save(model)
    r = _benchmark(*[a for a in TINY if not a.startswith("--models")], "--repeats=1",
                   f"--model_path={model},{exported / 'model_float32.tflite'}", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert report["training"] == {} and report["evaluation"] == {}
    assert "skipped" in report["pipeline"]
    assert list(report["inference"]) == ["keras:m.keras", "tflite:model_float32.tflite"]
    assert report["settings"]["num_threads"] == 0  # every core
    # Inference only: the table states inference settings, none of training's.
    table = speed_table.format_table(report)
    assert "settings: batch" not in table and "jit_compile" not in table
    assert ("inference settings: 3 timed batch-1 calls and batch-128 throughput per model "
            "after a warm-up, every core for .tflite models") in table


# Each error names the flag or value at fault (the wording is the libraries').
@pytest.mark.parametrize("args,named", [
    (["--models=resnet21"], ["resnet21", "6n+2"]),
    (["--models=resnet8,resnet8"], ["models", "twice"]),
    (["--model_path=/nonexistent/model"], ["/nonexistent/model"]),
    (["--peer=/nonexistent/python"], ["/nonexistent/python"]),
    ([f"--peer={sys.executable}", "--peer_script=/nonexistent.py"], ["/nonexistent.py"]),
    (["--steps=0"], ["steps", "10,000", "got 0"]),
    (["--steps=1"], ["steps", "steps_per_execution", "got 1"]),
    (["--steps=5", "--steps_per_execution=2"], ["--steps_per_execution=2", "the 5 steps",
                                                "divisor of 5 (1, 5), or change --steps."]),
    (["--models="], ["models is empty"]),
    ([f"--peer={sys.executable}", f"--peer_script={REPO / 'scripts' / 'torch_peer.py'}",
      "--peer_modes="], ["peer_modes is empty"]),
    (["--num_threads=-1"], ["num_threads", "-1"]),
    (["--learning_rate=-1"], ["learning_rate", "-1"]),
    (["--out=/"], ["out", "folder"]),
    (["--variants=float32,float32"], ["variants", "twice"]),
    (["--variants=float64"], ["'float64'", "float32, mixed_float16"]),
    (["--variants=float32+fast"], ["'float32+fast'", "+xla"]),
    (["--variants=float32,mixed_bfloat16", "--jit_compile"], ["variants", "not both"]),
])
def test_user_errors_are_one_line(args, named):
    r = _benchmark(*TINY, *args, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(text in last for text in named), last


def test_a_peer_that_fails_is_said_before_any_measurement(fake_peer):
    """One tiny step per mode first, before TensorFlow loads: here a mode it refuses."""
    r = _benchmark(*TINY, f"--peer={sys.executable}", f"--peer_script={fake_peer}",
                   "--peer_modes=channels_last,fastest", timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: The peer failed ({sys.executable} {fake_peer} --model resnet8 --batch 2 "
        "--steps 1 --warmup 0 --mode fastest): peer.py: error: argument --mode: invalid "
        "choice: 'fastest'"]


def test_the_peer_script_without_torch_says_so_in_one_line():
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here: the peer runs")
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "torch_peer.py"), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("error: the peer needs PyTorch"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
