"""luodi: from raw data to a model in production."""
__version__ = "0.1.0"
