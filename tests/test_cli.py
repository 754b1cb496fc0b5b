"""The shared command-line layer: conventions, errors, ~ expansion, quiet output, fast flags."""

from __future__ import annotations

import ast
import re
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from keras_resnet_cifar import cli

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("train", "evaluate", "export", "predict", "serving_client", "import_weights",
         "benchmark", "convert_checkpoint", "report", "study", "serve_local", "serving_config")

# Installed as sitecustomize: importing TensorFlow or Keras fails at once, so a tool
# that answers correctly under it provably answered before loading TensorFlow.
_BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    class _NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras"):
                raise ImportError(f"{name} was imported before the flags were checked")
            return None

    sys.meta_path.insert(0, _NoTensorFlow())
""")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra.pop("block", None), str(REPO)]))
    return {**env, **extra}


def _run(tool, *args, cwd=None, **env):
    return subprocess.run([sys.executable, "-m", f"keras_resnet_cifar.{tool}", *args],
                          env=_env(**env), cwd=cwd, capture_output=True, text=True)


def test_expand_path(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KRC_DATA", "/data")
    assert cli.expand_path("~/data/cifar10") == f"{tmp_path}/data/cifar10"
    assert cli.expand_path("$KRC_DATA/cifar10") == "/data/cifar10"
    assert cli.expand_path("") == "" and cli.expand_path("-") == "-"


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """A folder for PYTHONPATH whose sitecustomize refuses TensorFlow and Keras, and a
    SavedModel without this project's model card (``sm``) beside it."""
    folder = tmp_path_factory.mktemp("blocked")
    (folder / "sitecustomize.py").write_text(_BLOCKER)
    (folder / "sm").mkdir()
    (folder / "sm" / "saved_model.pb").write_bytes(b"")
    return folder


@pytest.mark.parametrize("tool", TOOLS)
def test_flag_errors_and_help_answer_before_tensorflow_loads(tool, blocked):
    bad = _run(tool, "--no_such_flag=1", block=str(blocked))
    assert bad.returncode == 1, bad.stderr
    assert bad.stderr.splitlines() == [
        "error: Unknown command line flag 'no_such_flag' (--helpfull lists every flag)."]
    helped = _run(tool, "--help", block=str(blocked))
    assert "--[no]verbose" in helped.stdout and not helped.stderr, helped.stderr
    assert helped.returncode == 0  # asking for help is not a mistake


# Required flags, stray arguments, bad values and bad model names: one line, no TF.
@pytest.mark.parametrize("tool, args, message", [
    ("evaluate", (), "error: --model_path is required: "),
    ("predict", ("a.png",), "error: --model_path is required: "),
    ("serving_client", ("a.png",), "error: --model_name is required: "),
    ("import_weights", (), "error: --weights is required: "),
    ("export", (), "error: Give exactly one of --model_path"),
    ("export", ("--weights=w.npz", "--calibration_images=0"),
     "error: --calibration_images must be >= 1, got 0."),
    ("train", ("stray",), "error: Unexpected arguments: stray"),
    ("evaluate", ("--model_path=x", "extra"), "error: Unexpected arguments: extra"),
    ("serving_client", ("--model_name=m", "--timeout=0", "a.png"),
     "error: --timeout must be a positive number of seconds, got 0.0."),
    ("serving_client", ("--model_name=m", "--url=localhost:8501", "a.png"),
     "error: --url must start with http:// or https://, got 'localhost:8501'."),
    ("serving_client", ("--model_name=a/b", "a.png"),
     "error: --model_name must be letters, digits, '.', '_' or '-' (one path "
     "segment of the URL), got 'a/b'."),
    # Issue 16, item 9: these were tracebacks or went to another endpoint.
    *(("serving_client", ("--model_name=m", f"--url={url}", "a.png"),
       f"error: --url {problem}") for url, problem in (
        ("http://127.0.0.1:99999", "is malformed (Port out of range 0-65535)"),
        ("http://127.0.0.1:abc", "is malformed (Port could not be cast"),
        ("http://[::1", "is malformed (Invalid IPv6 URL)"),
        ("http://", "has no host name"),
        ("http://h:8501/?x=1#frag", "must not hold a query (?...) or fragment"))),
    *(("serving_client", (f"--model_name={name}", "a.png"),
       "error: --model_name must be letters, digits") for name in ("a?b", "a#b", "..")),
    # Issue 16, item 6: a SavedModel is a program; one from elsewhere needs the opt-in.
    *((tool, ("--model_path=sm", *extra), "error: sm has no model_card.json of "
       "keras_resnet_cifar.export. A SavedModel is a program") for tool, extra in (
        ("evaluate", ()), ("export", ()), ("predict", ("--dataset=synthetic",)),
        ("benchmark", ("--models=resnet8",)))),
    ("serving_client", ("--model_name=m", "--timeout=1e10", "a.png"),
     "error: --timeout must be at most 86400 seconds (a day), got 10000000000.0."),
    # Model names and TrainConfig's values are checked without Keras (arch.py).
    ("train", ("--model=foo",), "error: Unknown model name 'foo'"),
    ("train", ("--learning_rate=-1",),
     "error: --learning_rate must be a finite number > 0"),
    ("benchmark", ("--models=",), "error: --models is empty"),
    ("benchmark", ("--models=resnet20,foo",), "error: Unknown model name 'foo'"),
    ("convert_checkpoint", (), "error: Give the reference's .th checkpoints"),
    ("report", ("runs/a",), "error: --out is required: "),
    ("report", ("--out=r",), "error: Give the run directories to report on"),
    ("report", ("--out=r", "--accuracy_levels=2", "runs/a"),
     "error: --accuracy_levels must be fractions in (0, 1)"),
    ("study", ("--models=plain21",), "error: Invalid depth 21 in 'plain21'"),
    ("study", ("--accuracy_levels=x",), "error: --accuracy_levels must be numbers"),
    # The spellings of the package's first days are gone: unknown flags like any other.
    ("predict", ("--model=x",), "error: Unknown command line flag 'model'"),
    ("export", ("--export_dir=x",), "error: Unknown command line flag 'export_dir'"),
    ("benchmark", ("--json=out.json",), "error: flag --json=out.json: ('Non-boolean"),
])
def test_mistakes_are_one_line_before_tensorflow_loads(tool, args, message, blocked):
    done = _run(tool, *args, block=str(blocked), cwd=blocked)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1].startswith(message), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("argv, asked", [
    (["t", "--help"], True), (["t", "-?"], True), (["t", "--helpfull"], True),
    (["t", "--helpshort"], True), (["t", "--help=false"], False), (["t", "--helper"], False),
    (["t", "--", "--help"], False), (["t", "--model=x"], False)])
def test_asked_for_help(argv, asked):
    assert cli.asked_for_help(argv) is asked


def test_helpfull_exits_0():
    helped = _run("evaluate", "--helpfull")
    assert helped.returncode == 0 and "--model_path" in helped.stdout


def test_train_refuses_a_busy_run_directory_and_a_wrong_data_dir_before_tensorflow(tmp_path):
    """The lock, the data path and the recipe are checked before TensorFlow loads."""
    import fcntl

    (tmp_path / "sitecustomize.py").write_text(_BLOCKER)
    block = str(tmp_path)
    busy = tmp_path / "busy"
    busy.mkdir()
    fd = os.open(busy / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242\n")
        done = _run("train", f"--model_dir={busy}", block=block)
    finally:
        os.close(fd)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"error: {busy} is in use by another training process (pid 4242); wait for it to "
        "end, or choose another run directory.")
    wrong = _run("train", f"--model_dir={tmp_path / 'new'}", f"--data_dir={tmp_path / 'no'}",
                 block=block)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr, wrong.stderr
    assert wrong.stderr.splitlines()[-1] == (
        f"error: CIFAR-10 data path {tmp_path / 'no'} does not exist.")
    assert not (tmp_path / "new").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model": "resnet20",
                                                   "steps_per_epoch": None}))
    refused = _run("train", f"--model_dir={other}", "--steps_per_epoch=20",
                   "--learning_rate=0.2", block=block)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "--steps_per_epoch=20 (the run has no cap)" in refused.stderr  # every difference
    assert "--learning_rate=0.2 (the run has 0.1)" in refused.stderr  # spelled as a flag
    assert f"delete {other} first" in refused.stderr


def test_export_without_litert_says_so_before_any_work(tmp_path):
    """export needs the LiteRT runtime to check its .tflite models: one line, at once."""
    (tmp_path / "sitecustomize.py").write_text(_BLOCKER.replace(
        '("tensorflow", "keras")', '("tensorflow", "keras", "ai_edge_litert")'))
    done = _run("export", "--weights=resnet20.npz", block=str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        "error: export runs the TFLite models it writes on the LiteRT runtime, which is not "
        "installed here: pip install ai-edge-litert")
    assert not (tmp_path / "exports").exists()


def test_help_lists_the_flags_a_tool_takes_from_shared_modules():
    """train's --help names its training flags (defined in train_flags), not only its own."""
    for tool, shared in (("train", "--epochs"), ("benchmark", "--mixed_precision")):
        helped = _run(tool, "--help")
        for flag in (shared, "--batch_size", "--data_dir", "--[no]verbose"):
            assert f"\n  {flag}:" in helped.stdout, (tool, flag)


@pytest.mark.parametrize("raised, code, line", [
    ("cli.signals.Interrupted('SIGTERM')", 143, "error: terminated (SIGTERM)"),
    # What a library that stops on signals itself raises (training's resumable stop).
    ("KeyboardInterrupt('SIGTERM')", 143, "error: terminated (SIGTERM)"),
    ("KeyboardInterrupt('SIGINT')", 130, "stopped (Ctrl-C)"),
    ("KeyboardInterrupt()", 130, "stopped (Ctrl-C)")])
def test_signals_end_in_one_line_and_their_exit_status(tmp_path, raised, code, line):
    tool = tmp_path / "tool.py"
    tool.write_text(f"from keras_resnet_cifar import cli\n\n"
                    f"def main(argv):\n    raise {raised}\n\n"
                    f"cli.run(main)\n")
    done = subprocess.run([sys.executable, str(tool)], env=_env(), capture_output=True,
                          text=True)
    assert (done.returncode, done.stderr.strip()) == (code, line)


def _cli_modules():
    """Every module a user runs: the package's tools and the repository's scripts."""
    files = [*(REPO / "keras_resnet_cifar").rglob("*.py"), *(REPO / "scripts").glob("*.py")]
    return sorted(p for p in files if p.name == "__main__.py"
                  or 'if __name__ == "__main__":' in p.read_text())


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports, with ``from a import b`` counted as a and a.b."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return names


def test_tools_sit_on_top_of_libraries():
    """No module of the package imports a tool (a CLI module), and only the shared
    command-line layer (cli, train_flags) and the tools read flags or import that layer."""
    package = sorted((REPO / "keras_resnet_cifar").rglob("*.py"))
    tools = {_module_name(p) for p in _cli_modules() if p in package}
    assert {"keras_resnet_cifar.study", "keras_resnet_cifar.report"} <= tools
    for path in package:
        name, imported = _module_name(path), _imports(path)
        assert not imported & (tools - {name}), f"{name} imports the tool(s) " \
            f"{sorted(imported & tools)}: move what it needs into a library"
        flag_layer = {"keras_resnet_cifar.cli", "keras_resnet_cifar.train_flags"}
        if name not in tools | flag_layer:
            assert "absl.flags" not in imported, f"{name} is a library but reads flags"
            assert not imported & flag_layer, f"{name} is a library but imports the " \
                f"flag layer ({sorted(imported & flag_layer)})"


def test_help_shows_every_docstring_line_as_written():
    """--help prints the module docstring: a backslash ending a line of a non-raw
    docstring (a shell continuation in an example) would run two lines together."""
    modules = _cli_modules()
    assert {"train.py", "benchmark.py", "torch_peer.py"} <= {p.name for p in modules}
    for path in modules:
        source = path.read_text()
        literal = ast.parse(source).body[0].value
        assert isinstance(literal.value, str), f"{path.name} has no docstring for --help"
        written = ast.get_source_segment(source, literal)
        assert literal.value.count("\n") == written.count("\n"), (
            f"{path.name}: a line of the docstring ends in a backslash; make it r\"\"\"...")


def test_train_config_mistakes_are_one_line(tmp_path):
    """TrainConfig validates with ValueError; train turns those into user errors."""
    for args, message in ((("--model=resnet21",), "error: Invalid depth 21 in 'resnet21'"),
                          (("--epochs=0",), "error: --epochs must be positive, got 0.")):
        done = _run("train", "--dataset=synthetic", *args, cwd=tmp_path)
        assert done.returncode == 1
        assert done.stderr.splitlines()[-1].startswith(message), done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()


def test_tilde_and_variables_in_path_flags(tmp_path):
    """--data_dir=~/... and --model_path=$VAR/... reach the tool expanded."""
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    missing = _run("evaluate", "--model_path=~/data/nothing.keras", HOME=str(home))
    assert missing.stderr.splitlines()[-1] == (
        f"error: No run directory, .keras file, SavedModel or .tflite file at "
        f"{home}/data/nothing.keras.")
    (home / "data" / "junk.keras").write_text("not a zip")
    junk = _run("predict", "--model_path=$KRC_MODELS/junk.keras", "--dataset=synthetic",
                KRC_MODELS=str(home / "data"))
    assert junk.stderr.splitlines()[-1] == (
        f"error: {home}/data/junk.keras exists but is not a .keras model (not a zip archive).")


def test_positional_files_are_expanded_too(tmp_path):
    from keras_resnet_cifar.deploy import tflite
    from keras_resnet_cifar.models import networks

    home = tmp_path / "home"
    home.mkdir()
    (home / "m.tflite").write_bytes(tflite.convert(networks.build_model("resnet8"), "float32"))
    np.save(home / "x.npy", np.zeros((2, 32, 32, 3), np.uint8))
    done = _run("predict", "--model_path=~/m.tflite", "--json", "~/x.npy", HOME=str(home))
    assert done.returncode == 0, done.stderr
    assert f"{home}/x.npy[1]" in done.stdout


@pytest.mark.slow
def test_quiet_by_default_and_verbose_on_request(tmp_path):
    """No TensorFlow start-up lines (cuInit, oneDNN, CUDA) unless --verbose."""
    from keras_resnet_cifar.models import networks

    networks.build_model("resnet8").save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.zeros((1, 32, 32, 3), np.uint8))
    quiet = _run("predict", f"--model_path={tmp_path / 'm.keras'}", "x.npy", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    assert quiet.stdout.startswith("x.npy")
    loud = _run("predict", f"--model_path={tmp_path / 'm.keras'}", "x.npy", "--verbose",
                cwd=tmp_path)
    assert loud.returncode == 0, loud.stderr
    # TensorFlow's own lines are there with --verbose: what the default hides is real.
    assert "oneDNN" in loud.stderr or "cuda" in loud.stderr.lower(), loud.stderr


def test_library_info_lines_are_quiet_unless_verbose():
    import logging as std_logging

    def record(path, level=std_logging.INFO):
        return std_logging.LogRecord("absl", level, path, 1, "message", None, None)

    library = "/venv/lib/python3.11/site-packages/tensorflow/python/saved_model/builder_impl.py"
    ours = "/repo/keras_resnet_cifar/deploy/exporter.py"
    quiet = cli.QuietLibraries()  # installed only without --verbose
    assert not quiet.filter(record(library))
    assert quiet.filter(record(library, std_logging.WARNING))
    assert quiet.filter(record(ours))
    assert quiet.filter(record("/site-packages/keras_resnet_cifar/x.py"))
    tfds = "/venv/lib/python3.11/site-packages/tensorflow_datasets/core/utils/file_utils.py"
    assert not quiet.filter(record(tfds, std_logging.WARNING))
    assert quiet.filter(record(tfds, std_logging.ERROR))


def test_log_lines_read_plainly():
    import logging as std_logging

    formatter = cli.PlainFormatter()
    info = std_logging.LogRecord("absl", std_logging.INFO, "x.py", 1, "epoch %d/%d", (1, 3),
                                 None)
    warning = std_logging.LogRecord("absl", std_logging.WARNING, "x.py", 1, "no --data_dir",
                                    None, None)
    assert formatter.format(info) == "epoch 1/3"
    assert formatter.format(warning) == "warning: no --data_dir"


def test_predict_reports_missing_inputs_before_loading_a_model(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(_BLOCKER)
    r = _run("predict", f"--model_path={tmp_path / 'run'}", "missing.png", "other.npy",
             cwd=tmp_path, block=str(tmp_path))
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == ["error: missing.png: no such file.",
                                     "error: other.npy: no such file."]


def test_print_ranked_prints_the_table_or_json_then_the_errors(capsys):
    """The printer predict and serving_client share: errors last, on stderr, exit 1."""
    rows = [{"input": "a.png", "top": [{"class": "cat", "probability": 0.75}]}]
    cli.print_ranked(rows, [], as_json=False, footer="cifar10 test: accuracy 50.00% (1/2)")
    assert capsys.readouterr() == ("a.png  cat  75.0%\ncifar10 test: accuracy 50.00% (1/2)\n",
                                   "")
    with pytest.raises(SystemExit) as stopped:
        cli.print_ranked(rows, ["b.png: no such file."], as_json=True, footer="not in JSON",
                         model={"kind": "tflite"})
    out, err = capsys.readouterr()
    assert stopped.value.code == 1 and err == "error: b.png: no such file.\n"
    assert json.loads(out) == {"model": {"kind": "tflite"}, "predictions": rows,
                               "errors": ["b.png: no such file."]}


@pytest.mark.parametrize("tool", ["train", "study"])
def test_help_into_a_pipe_closed_early_ends_quietly(tool):
    """``python -m keras_resnet_cifar.train --help | head -3``: a real pipe, closed early.

    The pipe is shrunk to one page, so the help cannot all fit in it: the reader
    takes its first bytes and closes it while the tool is still writing, and every
    run hits the closed pipe (a shell's ``head`` does so only some of the time).
    """
    import fcntl

    # The test can fail only if the help does not fit in the pipe and what is read.
    assert len(_run(tool, "--help").stdout.encode()) > 4096 + 100
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, 1031, 4096)  # F_SETPIPE_SZ (Linux): one page
    proc = subprocess.Popen([sys.executable, "-m", f"keras_resnet_cifar.{tool}", "--help"],
                            stdout=write_end, stderr=subprocess.PIPE, env=_env(), text=True)
    os.close(write_end)
    assert os.read(read_end, 100)
    os.close(read_end)
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, stderr
    assert stderr == ""


# Installed as sitecustomize: TensorFlow, Keras, matplotlib and scikit-learn are "not
# installed" (ModuleNotFoundError, as in the edge install of docs/deployment.md).
_NOT_INSTALLED = textwrap.dedent("""
    import importlib.abc, sys

    class _NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "matplotlib", "sklearn"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NotInstalled())
""")


@pytest.mark.parametrize("tool,args,needs", [
    ("train", ["--flagfile=flags/smoke.cfg"], "keras"),
    ("import_weights", ["--weights=tests/fixtures/resnet20-12fca82f.th"], "keras"),
    ("benchmark", ["--models=resnet8", "--steps=2"], "tensorflow"),
    ("report", ["docs/study/runs/resnet20-seed0"], "matplotlib")])
def test_a_missing_dependency_is_one_line(tool, args, needs, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(_NOT_INSTALLED)
    out = tmp_path / ("run" if tool == "train" else "out")
    extra = [f"--model_dir={out}"] if tool == "train" else (
        [f"--out={out}.keras"] if tool == "import_weights" else [f"--out={out}"])
    r = _run(tool, *args, *extra, cwd=REPO, block=str(blocker))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {tool} needs {needs}, which is not installed here"), \
        r.stderr


@pytest.mark.slow
def test_the_edge_install_answers_every_tool_in_one_line(tmp_path):
    """docs/deployment.md's edge install, for real: a venv of numpy, Pillow, absl-py and
    LiteRT, the package installed without its dependencies (no TensorFlow, Keras,
    matplotlib or scikit-learn). Needs PyPI or pip's cache; skips without either."""
    venv = tmp_path / "edge"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    got = subprocess.run([*pip, "numpy", "pillow", "absl-py", "ai-edge-litert"],
                         capture_output=True, text=True)
    if got.returncode:
        pytest.skip(f"cannot install the edge dependencies here: {got.stderr[-300:]}")
    subprocess.run([*pip, "--no-deps", "-e", str(REPO)], check=True, capture_output=True)
    missing = subprocess.run([python, "-c", "import tensorflow"], capture_output=True)
    assert missing.returncode == 1  # the venv really lacks it
    for tool, *args in (["train", "--flagfile=flags/smoke.cfg", f"--model_dir={tmp_path}/r"],
                        ["import_weights", "--weights=tests/fixtures/resnet20-12fca82f.th",
                         f"--out={tmp_path}/r.keras"],
                        ["benchmark", "--models=resnet8", "--steps=2"],
                        ["report", "docs/study/runs/resnet20-seed0", f"--out={tmp_path}/rep"]):
        r = subprocess.run([python, "-m", f"keras_resnet_cifar.{tool}", *args], cwd=REPO,
                           capture_output=True, text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (tool, r.stderr)
        assert r.stderr.strip().splitlines()[-1].startswith(f"error: {tool} needs "), r.stderr


@pytest.mark.parametrize("script", ["serve.sh", "launch_multiworker.sh", "run_study.sh",
                                    "full_recipe.sh"])
def test_every_script_answers_help(script):
    r = subprocess.run([str(REPO / "scripts" / script), "--help"], capture_output=True,
                       text=True, env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr.lower()
    assert f"scripts/{script}" in r.stdout or "keras_resnet_cifar.study" in r.stdout


@pytest.mark.parametrize("tool", TOOLS)
def test_help_has_no_sphinx_markup(tool):
    """--help prints the module docstring: read as plain text, without :class:`...` or ``x``."""
    r = _run(tool, "--help")
    assert r.returncode == 0
    assert not re.search(r":(class|mod|func|meth|data|attr|exc):`|``", r.stdout), r.stdout


def test_command_docstrings_are_plain_text():
    """The docstring is the --help text: written plain, not converted when printed."""
    for tool in TOOLS:
        doc = ast.get_docstring(ast.parse((REPO / "keras_resnet_cifar" / f"{tool}.py")
                                          .read_text()))
        assert not re.search(r":(class|mod|func|meth|data|attr|exc):`|``", doc), tool


@pytest.mark.parametrize("message, argument, line", [
    ("learning_rate must be at most 1,000, got 1e+300", "learning_rate",
     "--learning_rate must be at most 1,000, got 1e+300"),
    # A longer name holding the argument, or one already spelled as a flag, stays.
    ("warmup_learning_rate exceeds learning_rate", "learning_rate",
     "warmup_learning_rate exceeds --learning_rate"),
    ("--out x is a folder", "out", "--out x is a folder"),
    ("model_dir holds another run", None, "model_dir holds another run"),
    # Only the word that opens the message or names a value; prose keeps its words.
    ("Unknown model name 'foo'", "model", "Unknown model name 'foo'"),
    ("models is empty: name models to train", "models", "--models is empty: name models to train"),
    ("no model.keras yet (checkpoint=last for an unfinished run)", "checkpoint",
     "no model.keras yet (--checkpoint=last for an unfinished run)"),
    ("it is not vouched for; load it with trust_savedmodel.", "trust_savedmodel",
     "it is not vouched for; load it with --trust_savedmodel."),
    ("big.png: is 64x48, not 32x32 (not resized under strict).", "strict",
     "big.png: is 64x48, not 32x32 (not resized under --strict)."),
])
def test_library_arguments_are_printed_as_flags(message, argument, line):
    assert cli.flag_message(cli.UserError(message, argument=argument)) == line


def test_a_library_argument_error_is_one_flag_line(tmp_path):
    code = ("from keras_resnet_cifar import cli\n"
            "def main(argv):\n"
            "    raise cli.UserError('seeds must not be empty, got []', argument='seeds')\n"
            "cli.run(main)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["error: --seeds must not be empty, got []"]
