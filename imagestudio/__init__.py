"""Image Studio: a local-first AI image generation studio."""
__version__ = "0.1.0"
