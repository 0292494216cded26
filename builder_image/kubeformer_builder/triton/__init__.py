"""Triton model repository: rendering and layout (repository.py) and the models it ships."""
