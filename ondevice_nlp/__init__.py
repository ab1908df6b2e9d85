"""ondevice-nlp: tiny on-device intent and slot models with hashing projections."""
__version__ = "0.1.0"
