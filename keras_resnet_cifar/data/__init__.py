"""Reading CIFAR-10 and feeding it: the datasets, the input pipeline, images and labels.

This package's ``__init__`` imports nothing, so flag errors and ``--help`` stay instant.
"""
