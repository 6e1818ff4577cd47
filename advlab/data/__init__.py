"""Lightning DataModules that yield [0, 1] images and integer labels."""

from advlab.data.mnist import MNISTDataModule

__all__ = ["MNISTDataModule"]
