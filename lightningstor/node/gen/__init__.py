"""Code generated from ``proto/lightningstor_node.proto`` by grpcio-tools.

Do not edit: run ``tox -e proto`` (``python proto/generate.py``) instead.
"""
