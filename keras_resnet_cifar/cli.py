"""The command-line layer every tool starts through (run()): flags (docs/command-line.md), quiet
output, one-line errors. A UserError, a flag error or a missing dependency ends in one `error:` line
and exit status 1; SIGTERM in 143, Ctrl-C in 130; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging as std_logging
import os
import platform
import re
import sys
from typing import Any, Callable, Iterator, Mapping, Sequence

from absl import app, flags, logging

from keras_resnet_cifar import environment, signals
from keras_resnet_cifar.errors import UserError, exit_with, message_of

# Path flags of every tool: "~" and "$VARS" are expanded (no shell does after "--flag=").
PATH_FLAGS = ("data_dir", "model_dir", "model_path", "out", "weights", "report_dir")


def expand_path(value: str) -> str:
    return os.path.expandvars(os.path.expanduser(value)) if value else value


# What --model_path names in evaluate, predict and export: anything predictor.load loads.
MODEL_PATH = "a run directory, a .keras file, a SavedModel folder or a .tflite file"


def define_model_flags() -> None:
    # Neither import loads Keras or TensorFlow: --help stays instant.
    from keras_resnet_cifar import train_flags
    from keras_resnet_cifar.deploy import predictor

    flags.DEFINE_string("model_path", None, f"The model: {MODEL_PATH} (export: all but the last).")
    flags.DEFINE_enum("checkpoint", "final", list(predictor.CHECKPOINTS),
                      "In a run directory: final (model.keras), or the best or last "
                      "checkpoint (checkpoints/{best,last}.keras).")
    flags.DEFINE_boolean("trust_savedmodel", False, predictor.TRUST_HELP)
    flags.DEFINE_string("data_dir", None, train_flags.help_text("data_dir"))


def print_ranked(predictions: Sequence[dict], errors: Sequence[object], *, as_json: bool,
                 footer: str | None = None, **json_fields: Any) -> None:
    """Prints the rows as a table (or JSON with `json_fields`), errors on stderr; exit 1 if any."""
    from keras_resnet_cifar.data.labels import format_ranked

    errors = [flag_message(e) if isinstance(e, UserError) else str(e) for e in errors]
    if as_json:
        print(json.dumps({**json_fields, "predictions": list(predictions),
                          "errors": errors}, indent=2))
    else:
        if predictions:
            print(format_ranked(predictions))
        if footer:
            print(footer)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        raise SystemExit(1)


def use_onednn_by_default() -> None:
    """TF leaves oneDNN off on x86 CPUs without AVX-512 VNNI/BF16/AMX (e.g. AVX2 EPYC), where it
    trains ResNet-20 ~1.8x faster (docs/performance.md); TF_ENABLE_ONEDNN_OPTS still wins."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


@contextlib.contextmanager
def native_logs_muted() -> Iterator[None]:
    """Drops what native code (TF, its converter, LiteRT: C++ banners TF_CPP_MIN_LOG_LEVEL misses)
    writes to fd 2 in the block; Python's stderr, absl's and faulthandler move to a copy of it."""
    sys.stderr.flush()
    real = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    python_stderr = os.fdopen(os.dup(real), "w", buffering=1,
                              encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                              errors="backslashreplace")
    old_stderr, handler = sys.stderr, logging.get_absl_handler().python_handler
    old_stream = handler.stream
    sys.stderr = python_stderr
    handler.setStream(python_stderr)
    if faulthandler.is_enabled():
        faulthandler.enable(file=python_stderr)
    try:
        yield
    finally:
        python_stderr.flush()
        sys.stderr = old_stderr
        handler.setStream(old_stream)
        os.dup2(real, 2)
        os.close(real)
        if faulthandler.is_enabled():
            faulthandler.enable(file=sys.__stderr__)
        python_stderr.close()


# The libraries' INFO lines ("Assets written to", ...) are dropped, and tensorflow-datasets'
# cache warnings while it looks for a data set (the tools say in one line what matters).
_LIBRARY_PATH = re.compile(r"[/\\](tensorflow|tensorflow_datasets|keras|ai_edge_litert)[/\\]")
_TFDS_PATH = re.compile(r"[/\\]tensorflow_datasets[/\\]")


class QuietLibraries(std_logging.Filter):
    """Drops the libraries' own log records below WARNING (tensorflow-datasets': below ERROR)."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        path = record.pathname or ""
        floor = std_logging.ERROR if _TFDS_PATH.search(path) else std_logging.WARNING
        return record.levelno >= floor or not _LIBRARY_PATH.search(path)


class PlainFormatter(std_logging.Formatter):
    """The message alone, `warning:`/`error:` before it (absl's prefix: with --verbose)."""

    def format(self, record: std_logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= std_logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


# absl's help flags: they print the usage and exit before main.
_HELP_FLAG = re.compile(r"--?(\?|help|helpshort|helpfull|helpxml)(=.*)?", re.S)


def asked_for_help(argv: Sequence[str]) -> bool:
    """Whether `argv` has one of absl's help flags (before a `--`)."""
    for arg in argv[1:]:
        if arg == "--":
            return False
        m = _HELP_FLAG.fullmatch(arg)
        if m and (m.group(2) or "=true").lower()[1:] in ("", "true", "t", "1", "yes"):
            return True
    return False


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        exit_with(f"{message_of(e)} (--helpfull lists every flag).")
    except SystemExit as e:
        # absl prints the help of --help, --helpfull, ... and exits with status 1, the
        # status of a mistake; asking for help is none: 0.
        if e.code == 1 and asked_for_help(argv):
            raise SystemExit(0) from None
        raise


def _check_and_expand(argv: list[str], *, takes_files: bool, required: Mapping[str, str],
                      paths: Sequence[str]) -> list[str]:
    FLAGS = flags.FLAGS
    for name in (*PATH_FLAGS, *paths):
        if name in FLAGS and FLAGS[name].value:
            value = FLAGS[name].value
            environment.GIVEN[name] = value
            FLAGS[name].value = ([expand_path(v) for v in value] if isinstance(value, list)
                                 else expand_path(value))
    if len(argv) > 1 and not takes_files:
        raise UserError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are --name=value).")
    for name, what in required.items():
        value = FLAGS[name].value
        if value is None or value == "" or value == []:
            raise UserError(f"--{name} is required: {what}.")
    return [argv[0], *(expand_path(a) for a in argv[1:])]


def run(main: Callable[[list[str]], object], *, takes_files: bool = False,
        required: Mapping[str, str] | None = None,
        trains: bool = False, paths: Sequence[str] = ()) -> None:
    """Parses the flags and runs `main(argv)` (argv[1:]: the positional files, expanded).
    `required`: flag -> what it is; `trains` turns oneDNN on; `paths`: more path flags."""
    if "verbose" not in flags.FLAGS:
        flags.DEFINE_boolean("verbose", False, "Also show TensorFlow's and LiteRT's own log "
                             "lines (start-up banners, converter internals).")
    # Key flags of the tool's module (absl names __main__ by sys.argv[0]): --help lists
    # --verbose and the flags of the package's shared modules (train's --model, ...).
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
        if module.startswith("keras_resnet_cifar."):
            for flag in module_flags:
                flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    def wrapped(argv: list[str]):
        verbose = bool(flags.FLAGS.verbose)
        if trains:
            use_onednn_by_default()
        if not verbose:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            std_logging.getLogger("tensorflow").setLevel(std_logging.ERROR)
            logging.get_absl_handler().addFilter(QuietLibraries())
            logging.get_absl_handler().setFormatter(PlainFormatter())
        faulthandler.enable()
        try:
            # SIGTERM (a scheduler, a preemption) stops a tool as Ctrl-C does.
            with signals.StopSignals():
                argv = _check_and_expand(argv, takes_files=takes_files,
                                         required=required or {}, paths=paths)
                with contextlib.nullcontext() if verbose else native_logs_muted():
                    return main(argv)
        except UserError as e:
            exit_with(flag_message(e))
        except ModuleNotFoundError as e:
            top = (e.name or "").split(".")[0]
            if top not in _DEPENDENCIES:
                raise  # not a dependency: a bug
            tool = os.path.splitext(os.path.basename(sys.argv[0]))[0]
            exit_with(f"{tool} needs {_DEPENDENCIES[top]}, which is not installed here (pip "
                      f"install {_DEPENDENCIES[top]}, or pip install -e . in the checkout for all "
                      "dependencies); without TensorFlow, predict runs .tflite models "
                      "(docs/deployment.md).")
        except BaseException as error:  # noqa: B036 (signals, whatever they became)
            if (stopped := signals.stopped_by(error)) is None:
                raise
        if stopped == "SIGTERM":
            exit_with("terminated (SIGTERM)", 143)
        print("stopped (Ctrl-C)", file=sys.stderr)  # asked for: said plainly, not as an error
        raise SystemExit(130)

    try:
        app.run(wrapped, argv=sys.argv, flags_parser=_parse_flags)
    except BrokenPipeError:
        _reader_gone()
    finally:
        _flush_stdout()


# Import name -> pip name. The edge install (numpy, Pillow, absl-py, LiteRT) runs predict;
# the other tools say in one line what they need.
_DEPENDENCIES = {"tensorflow": "tensorflow", "keras": "keras", "matplotlib": "matplotlib",
                 "sklearn": "scikit-learn", "tensorflow_datasets": "tensorflow-datasets",
                 "tensorboard": "tensorboard", "PIL": "pillow",
                 "ai_edge_litert": "ai-edge-litert"}


def flag_message(error: UserError) -> str:
    """The error's line, with each library argument it names spelled as the flag (--name)."""
    text = message_of(error)
    for argument in (error.argument,) if isinstance(error.argument, str) else error.argument or ():
        name = re.escape(argument)  # the word that opens the message, or names a value (word=)
        text = re.sub(rf"^{name}(?![\w-])|(?<![\w-]){name}(?=[=.,:;)]|$)",
                      f"--{argument}", text, count=1)
    return text


def _flush_stdout() -> None:
    """Flushes stdout now, while a closed pipe can still be handled (not at exit)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_gone()


def _reader_gone() -> None:
    """Ends quietly when stdout's reader has gone (`--help | head -3`): 0 for help, else 1;
    stdout goes to /dev/null so that Python's flush at exit prints no traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise SystemExit(0 if asked_for_help(sys.argv) else 1)
