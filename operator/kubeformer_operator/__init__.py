"""kubeformer operator: reconciles OptimizedTransformer custom resources into Triton services."""
