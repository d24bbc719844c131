"""DVC pipeline stages comparing ResNet18 training strategies on CIFAR-100.

Each stage is a module with a ``main()``, run as ``python -m stages.<name>``.
"""
