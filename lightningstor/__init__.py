"""LightningStor: an S3-compatible object store on Twisted."""

__version__ = "0.1.0"

