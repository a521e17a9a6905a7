"""Configuration of mutual TLS between API servers and storage nodes.

``[storage.distributed] tls_cert_file/tls_key_file/tls_ca_file`` (config
validation and the backend factory's file checks) and the node's
``--tls-cert/--tls-key/--tls-ca`` options.  The handshakes themselves are
exercised on real processes in tests/integration/test_node_tls.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from twisted.python import usage

from lightningstor.config import ConfigProblems, TlsSettings, load_settings
from lightningstor.errors import ConfigError
from lightningstor.node import tap as node_tap
from lightningstor.node.tap import Options
from lightningstor.storage.distributed import DistributedStorageFactory, parse_node
from lightningstor.storage.nodeclient import NodeClient, NodeTls, load_node_tls
from lightningstor.tls import load_tls_material
from tests.integration.certs import Pki, issue, make_pki

HTTPS_NODES = '["https://127.0.0.1:9002", "https://127.0.0.1:9003"]'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("node-tls") / "pki")


def _load(tmp_path: Path, body: str) -> Any:
    path = tmp_path / "c.toml"
    path.write_text(body)
    return load_settings(str(path), env={})


def _problems(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ConfigProblems) as info:
        _load(tmp_path, body)
    return list(info.value.problems)


def _tls_keys(pki: Pki, *, cert: bool = True, key: bool = True, ca: bool = True) -> str:
    lines = []
    if cert:
        lines.append(f'tls_cert_file = "{pki.client_cert_file}"')
    if key:
        lines.append(f'tls_key_file = "{pki.client_key_file}"')
    if ca:
        lines.append(f'tls_ca_file = "{pki.ca_file}"')
    return "\n".join(lines) + "\n"


# -- [storage.distributed] validation ------------------------------------------------


def test_https_nodes_with_all_three_files_are_valid(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """https:// nodes plus cert, key and CA load; the paths reach the backend's options, absolute."""
    monkeypatch.chdir(tmp_path)
    rel_ca = os.path.relpath(pki.ca_file, tmp_path)
    body = (
        f"[storage]\nbackend = \"distributed\"\n[storage.distributed]\nnodes = {HTTPS_NODES}\n"
        "replication_factor = 2\n"
        f'tls_cert_file = "{pki.client_cert_file}"\ntls_key_file = "{pki.client_key_file}"\n'
        f'tls_ca_file = "{rel_ca}"\n'
    )
    options = _load(tmp_path, body).storage.options["distributed"]
    assert options["tls_cert_file"] == str(pki.client_cert_file)
    assert options["tls_key_file"] == str(pki.client_key_file)
    assert options["tls_ca_file"] == str(pki.ca_file)  # made absolute


@pytest.mark.parametrize("missing", ["tls_ca_file", "tls_cert_file", "tls_key_file"])
def test_https_node_without_a_tls_file_is_a_config_error(tmp_path: Path, pki: Pki, missing: str) -> None:
    """An https:// node needs the CA (to verify the node) and a client certificate and key
    (nodes require one): each missing key is reported by name, with the https URL."""
    keys = _tls_keys(pki, cert=missing != "tls_cert_file", key=missing != "tls_key_file",
                     ca=missing != "tls_ca_file")
    body = (
        f"[storage]\nbackend = \"distributed\"\n[storage.distributed]\nnodes = {HTTPS_NODES}\n"
        f"replication_factor = 2\n{keys}"
    )
    problems = _problems(tmp_path, body)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"storage.distributed.{missing}: required when a node URL is https://")
    assert "https://127.0.0.1:9002" in problems[0]


def test_https_node_without_any_tls_file_reports_all_three(tmp_path: Path) -> None:
    body = f"[storage]\nbackend = \"distributed\"\n[storage.distributed]\nnodes = {HTTPS_NODES}\nreplication_factor = 2\n"
    problems = _problems(tmp_path, body)
    assert sorted(p.split(":")[0] for p in problems) == [
        "storage.distributed.tls_ca_file", "storage.distributed.tls_cert_file", "storage.distributed.tls_key_file",
    ]


def test_tls_files_with_only_http_nodes_are_refused(tmp_path: Path, pki: Pki) -> None:
    """TLS files but plaintext node URLs would look protected and send chunks in the clear."""
    body = (
        '[storage]\nbackend = "distributed"\n[storage.distributed]\n'
        'nodes = ["http://127.0.0.1:9002"]\nreplication_factor = 1\n' + _tls_keys(pki)
    )
    problems = _problems(tmp_path, body)
    assert len(problems) == 1 and "no node URL is https://" in problems[0], problems


def test_mixed_http_and_https_nodes_are_allowed(tmp_path: Path, pki: Pki) -> None:
    """Moving nodes to TLS one at a time: http:// nodes stay plaintext, https:// ones use the files."""
    body = (
        '[storage]\nbackend = "distributed"\n[storage.distributed]\n'
        'nodes = ["http://127.0.0.1:9002", "https://127.0.0.1:9003"]\nreplication_factor = 2\n'
        + _tls_keys(pki)
    )
    assert _load(tmp_path, body).storage.options["distributed"]["tls_ca_file"] == str(pki.ca_file)


def test_cert_without_key_is_refused_even_without_nodes(tmp_path: Path, pki: Pki) -> None:
    body = "[storage.distributed]\n" + _tls_keys(pki, key=False, ca=False)
    problems = _problems(tmp_path, body)
    assert problems == ["storage.distributed.tls_key_file: required with tls_cert_file"]


def test_a_bad_tls_value_is_reported_once(tmp_path: Path, pki: Pki) -> None:
    """A key with a wrong type is reported as such, not again as 'required'."""
    body = (
        f"[storage]\nbackend = \"distributed\"\n[storage.distributed]\nnodes = {HTTPS_NODES}\n"
        "replication_factor = 2\n" + _tls_keys(pki, ca=False) + "tls_ca_file = 5\n"
    )
    problems = _problems(tmp_path, body)
    assert problems == ["storage.distributed.tls_ca_file: expected a string, got an integer (5)"]


def test_unknown_tls_key_gets_a_suggestion(tmp_path: Path, pki: Pki) -> None:
    body = f"[storage.distributed]\ntls_ca = \"{pki.ca_file}\"\n"
    problems = _problems(tmp_path, body)
    assert problems == ["unknown key 'storage.distributed.tls_ca' (did you mean 'tls_ca_file'?)"]


def test_example_files_list_the_tls_keys() -> None:
    """Both example configurations document the three keys."""
    examples = Path(__file__).resolve().parents[2] / "docs" / "examples"
    for name in ("single-node.toml", "cluster.toml"):
        text = (examples / name).read_text(encoding="utf-8")
        for key in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
            assert f"{key} = " in text, (name, key)


# -- the backend factory: files read and checked at start-up -------------------------


class _Context:
    reactor: Any = None
    io_pool: Any = None


def _section(pki: Pki, urls: list[str], **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "nodes": urls, "replication_factor": 1, "repair_interval_seconds": 0,
        "tls_cert_file": str(pki.client_cert_file), "tls_key_file": str(pki.client_key_file),
        "tls_ca_file": str(pki.ca_file),
    }
    section.update(overrides)
    return {"distributed": section}


def test_factory_gives_https_node_clients_the_client_certificate(pki: Pki) -> None:
    backend = DistributedStorageFactory().create(_section(pki, ["https://127.0.0.1:9002"]), _Context())
    (client,) = backend.clients.values()
    assert isinstance(client, NodeClient) and client.node.secure
    assert client.tls == NodeTls(pki.ca_file.read_bytes(), pki.client_key_file.read_bytes(),
                                 pki.client_cert_file.read_bytes())


def test_factory_needs_no_files_for_http_nodes(pki: Pki) -> None:
    section = _section(pki, ["http://127.0.0.1:9002"])
    for key in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
        del section["distributed"][key]
    backend = DistributedStorageFactory().create(section, _Context())
    assert [c.tls for c in backend.clients.values()] == [None]


def test_factory_refuses_https_node_without_ca(pki: Pki) -> None:
    with pytest.raises(ConfigError, match=r"storage\.distributed\.tls_ca_file: required"):
        DistributedStorageFactory().create(_section(pki, ["https://127.0.0.1:9002"], tls_ca_file=None), _Context())


def test_key_not_matching_the_client_certificate_fails_start_up(pki: Pki, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(issue(pki.ca, "other", server=False).key_pem())
    with pytest.raises(ConfigError) as info:
        load_node_tls(str(pki.client_cert_file), str(other), str(pki.ca_file))
    assert str(info.value).startswith("storage.distributed.tls_key_file: ")
    assert "does not match" in str(info.value)


def test_unreadable_ca_names_the_key(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^storage\.distributed\.tls_ca_file: cannot read"):
        load_node_tls(str(pki.client_cert_file), str(pki.client_key_file), str(tmp_path / "absent.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"^storage\.distributed\.tls_ca_file: .* no valid PEM certificate"):
        load_node_tls(str(pki.client_cert_file), str(pki.client_key_file), str(garbage))


def test_server_tls_errors_keep_their_names(pki: Pki, tmp_path: Path) -> None:
    """The generalised loader still names [server.tls] keys by default."""
    with pytest.raises(ConfigError, match=r"^server\.tls\.cert_file: cannot read"):
        load_tls_material(TlsSettings(str(tmp_path / "absent.crt"), str(pki.key_file)))


# -- the node's options -------------------------------------------------------------------


def _node_options(tmp_path: Path, *extra: str) -> Options:
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0", *extra])
    return options


def test_node_without_tls_options_has_no_tls(tmp_path: Path) -> None:
    assert _node_options(tmp_path)["tls"] is None


def test_node_tls_options_become_absolute_settings(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(pki.directory)
    options = _node_options(tmp_path, "--tls-cert", "server.crt", "--tls-key", "server.key", "--tls-ca", "ca.crt")
    assert options["tls"] == TlsSettings(str(pki.cert_file), str(pki.key_file), str(pki.ca_file))


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        (["--tls-cert", "c.pem", "--tls-key", "k.pem"], "--tls-ca"),
        (["--tls-cert", "c.pem"], "--tls-key and --tls-ca"),
        (["--tls-ca", "ca.pem"], "--tls-cert and --tls-key"),
    ],
)
def test_node_tls_options_come_all_three_or_none(tmp_path: Path, given: list[str], missing: str) -> None:
    """TLS on a node is always mutual: a certificate without --tls-ca would let anyone in."""
    with pytest.raises(usage.UsageError) as info:
        _node_options(tmp_path, *given)
    assert str(info.value).startswith(f"{missing} required with")


def test_node_tls_option_must_not_be_empty(tmp_path: Path) -> None:
    with pytest.raises(usage.UsageError, match="--tls-ca must not be empty"):
        _node_options(tmp_path, "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-ca", " ")


def test_node_start_up_with_a_mismatched_key_names_the_option(tmp_path: Path, pki: Pki) -> None:
    """makeService reads the files: a key that does not match stops start-up naming --tls-key."""
    other = tmp_path / "other.key"
    other.write_bytes(issue(pki.ca, "localhost", server=True).key_pem())
    options = _node_options(
        tmp_path, "--tls-cert", str(pki.cert_file), "--tls-key", str(other), "--tls-ca", str(pki.ca_file)
    )
    with pytest.raises(SystemExit) as info:  # one line, as the API server's (it was a traceback)
        node_tap.makeService(options)
    assert str(info.value).startswith(f"twistd lightningstor-node: --tls-key: {other} does not match the certificate")


def test_parse_node_marks_https_secure() -> None:
    assert parse_node("https://store-1:9002").secure
    assert not parse_node("http://store-1:9002").secure
