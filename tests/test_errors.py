"""errors: the user's mistakes and the sentences that print them."""

from keras_resnet_cifar.errors import plural


def test_plural():
    assert plural(1, "image") == "1 image"
    assert plural(0, "image") == "0 images"
    assert plural(10000, "test image") == "10,000 test images"
    assert plural(2, "batch", "batches") == "2 batches"
