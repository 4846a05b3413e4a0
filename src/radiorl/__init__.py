"""radiorl: learning-based radio resource management."""
__version__ = "0.1.0"
