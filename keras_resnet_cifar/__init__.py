"""keras-resnet-cifar: He et al. (2016) plain and residual CIFAR-10 networks in Keras 3."""

__version__ = "0.1.0"
