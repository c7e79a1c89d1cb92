"""recur: recursive, self-improving automated research."""

__version__ = "0.1.0"
