"""The progress line of long work on stderr."""

from keras_resnet_cifar.progress import Progress


def test_progress_lines_when_not_a_terminal(capsys):
    progress = Progress("scoring", every=3600)
    for done in (10, 20, 30):
        progress(done, 30)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["scoring: 10/30 images (33%)", "scoring: 30/30 images (100%)"]
