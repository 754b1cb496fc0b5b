"""The progress line of long work on stderr: one throttled line, in place on a terminal,
whole lines in a pipe (training's ProgressLine on it: tests/training/test_callbacks.py)."""

import io

from keras_resnet_cifar import progress
from keras_resnet_cifar.progress import Progress


def test_progress_lines_when_not_a_terminal(capsys):
    progress = Progress("scoring", every=3600)
    for done in (10, 20, 30):
        progress(done, 30)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["scoring: 10/30 images (33%)", "scoring: 30/30 images (100%)"]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_in_a_pipe_whole_lines_at_most_every_interval_and_always_the_last():
    out = io.StringIO()
    line = progress.Line(every=3600.0, stream=out)
    line.restart()  # in a pipe the first line is due after an interval
    line.show("a")
    line.show("b", final=True)
    line.clear()  # nothing to erase in a pipe
    assert out.getvalue() == "b\n"


def test_on_a_terminal_the_line_is_rewritten_in_place_and_erased():
    out = _Terminal()
    line = progress.Line(every=3600.0, tty_every=0.0, stream=out)
    line.restart()  # on a terminal at once
    line.show("step 1")
    line.show("step 2")
    line.clear()
    line.clear()  # erased once
    assert out.getvalue() == "\rstep 1\x1b[K\rstep 2\x1b[K\r\x1b[K"
    done = _Terminal()
    progress.Line(every=3600.0, stream=done).show("all", final=True)
    assert done.getvalue() == "\rall\x1b[K\n"  # the last line stays, on its own line
