"""signals: SIGINT and SIGTERM stop a tool or a training run, in one place.

The end-to-end checks (a real SIGTERM to a training process, exit status 143, the
run resumes) are in tests/training/test_resume.py and tests/test_cli.py.
"""

from __future__ import annotations

import os
import signal

import pytest

from keras_resnet_cifar import signals


@pytest.fixture(autouse=True)
def _no_signal_received(monkeypatch):
    monkeypatch.setitem(signals._received, "name", None)


def test_a_signal_raises_interrupted_with_its_name_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(signals.Interrupted) as stopped:
        with signals.StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.args[0] == "SIGTERM" and stop.received == "SIGTERM"
    assert isinstance(stopped.value, KeyboardInterrupt)  # cleanup code runs as for Ctrl-C
    assert signal.getsignal(signal.SIGTERM) is before


def test_nested_blocks_restore_the_outer_handler():
    with signals.StopSignals() as outer:
        with signals.StopSignals():
            pass
        with pytest.raises(signals.Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
    assert outer.received == "SIGINT"


def test_a_signal_inside_deferred_waits_for_the_block_to_end():
    written = []
    with signals.StopSignals() as stop:
        with pytest.raises(signals.Interrupted, match="SIGTERM"):
            with stop.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                written.append("the whole epoch")
    assert written == ["the whole epoch"]


def test_a_sigterm_that_a_library_turned_into_another_error_still_ends_as_sigterm():
    """TensorFlow, interrupted while tracing, re-raises the signal as a TypeError."""
    assert signals.stopped_by(TypeError("a bug")) is None
    with signals.StopSignals():
        with pytest.raises(signals.Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signals.stopped_by(TypeError("Failed to convert elements")) == "SIGTERM"


def test_stopped_by_reads_keyboard_interrupts():
    assert signals.stopped_by(KeyboardInterrupt()) == "SIGINT"  # Ctrl-C, no handler
    assert signals.stopped_by(signals.Interrupted("SIGINT")) == "SIGINT"
    assert signals.stopped_by(signals.Interrupted("SIGTERM")) == "SIGTERM"
    assert signals.stopped_by(ValueError()) is None
