"""The peer protocol: the command line a peer gets, the rate it prints, its failures."""

import sys

import pytest

from keras_resnet_cifar.analysis import peer
from keras_resnet_cifar.errors import UserError


@pytest.fixture
def echo_peer(tmp_path):
    """Its rate: its argument count, + 100 in bfloat16; refuses --mode fastest."""
    script = tmp_path / "peer.py"
    script.write_text("import sys\nif 'fastest' in sys.argv: sys.exit('peer.py: bad mode')\n"
                      "bf16 = 100 if sys.argv[-2:] == ['--precision', 'bfloat16'] else 0\n"
                      "print('img/s=%d' % (len(sys.argv) + bf16))\n")
    return [sys.executable, str(script)]


def test_the_peer_gets_the_model_and_the_precision_without_mixed(echo_peer):
    # --model m --batch b --steps s --warmup w --mode x: 10 arguments, the script the 11th.
    assert peer.rate(echo_peer, "resnet8", 2, 1, "default", warmup=0) == 11
    assert peer.rate(echo_peer, "resnet8", 2, 1, "default", precision="mixed_bfloat16") == 113


def test_a_peer_that_fails_or_cannot_run_is_a_user_error(echo_peer, tmp_path):
    with pytest.raises(UserError) as e:
        peer.check(echo_peer, ["default", "fastest"])
    assert "fastest" in str(e.value) and "bad mode" in str(e.value)
    with pytest.raises(UserError) as e:
        peer.rate([str(tmp_path / "nopython")], "resnet8", 2, 1, "default")
    assert "nopython" in str(e.value)


def test_ratios_are_pair_by_pair_with_their_median():
    assert peer.ratios([2.0, 3.0, 8.0], [1.0, 1.0, 2.0]) == {"pairs": [2.0, 3.0, 4.0],
                                                              "median": 3.0}
