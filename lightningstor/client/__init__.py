"""Python client of LightningStor's native gRPC API (SPEC §4.4).

``LightningStorClient.connect(url, token=...)``; errors are the typed
exceptions of :mod:`lightningstor.client.errors`.  The ``lightningstor``
command (:mod:`lightningstor.client.cli`) is built on it.
"""

from lightningstor.client.client import LightningStorClient, ObjectStream
from lightningstor.client.errors import LightningStorError
from lightningstor.grpc.token import make_token

__all__ = ["LightningStorClient", "LightningStorError", "ObjectStream", "make_token"]
