"""PyTorch backend: ``torch.nn`` modules, NCHW images, eager autograd."""

from impls.torch.backend import BACKEND, TorchBackend

__all__ = ["BACKEND", "TorchBackend"]
