"""Reading CIFAR-10 and feeding it. Imports nothing, so that --help stays instant."""
