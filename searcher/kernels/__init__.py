"""Kernels searcher can tune. Importing this package imports torch and triton."""
