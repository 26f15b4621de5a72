"""MedGAN Studio: synthetic augmentation of rare findings in medical images."""
__version__ = "0.1.0"
