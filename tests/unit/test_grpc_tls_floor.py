"""lightningstor.tls.refuse_tls12_on_grpc: the environment grpc reads its
TLS 1.2 cipher list from (the handshakes themselves are checked on real
server processes in tests/integration/test_tls.py and test_node_tls.py)."""

from __future__ import annotations

from lightningstor.tls import GRPC_TLS12_SUITES, refuse_tls12_on_grpc


def test_sets_the_unusable_suite_list_when_unset() -> None:
    environ: dict[str, str] = {"OTHER": "x"}
    assert refuse_tls12_on_grpc(environ) is True
    assert environ == {"OTHER": "x", "GRPC_SSL_CIPHER_SUITES": GRPC_TLS12_SUITES}
    assert refuse_tls12_on_grpc(environ) is True  # a worker inheriting it


def test_keeps_an_operators_own_list_and_says_so() -> None:
    environ = {"GRPC_SSL_CIPHER_SUITES": "ECDHE-RSA-AES128-GCM-SHA256"}
    assert refuse_tls12_on_grpc(environ) is False
    assert environ == {"GRPC_SSL_CIPHER_SUITES": "ECDHE-RSA-AES128-GCM-SHA256"}
