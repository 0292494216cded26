"""kubeformer builder: export, optimize, quantize and compile transformer encoders for Triton."""

__version__ = "0.1.0"
