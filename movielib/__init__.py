"""movielib: shot-level scene tags, features, encoders and served models for movie catalogs, on Ray."""

__version__ = "0.1.0"
