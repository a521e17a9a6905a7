"""Tests for lightningstor.config: merging file, environment and CLI, and validation."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from lightningstor.config import (
    ConfigProblems,
    Settings,
    default_workers,
    endpoint_description,
    format_address,
    load_settings,
    parse_address,
)
from lightningstor.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "single-node.toml"

# SPEC.md §8.1, verbatim.
SPEC_EXAMPLE = """\
[server]
grpc_addr = "0.0.0.0:9001"
s3_addr = "0.0.0.0:9000"

[server.tls]
cert_file = "/etc/lightningstor/tls/server.crt"
key_file = "/etc/lightningstor/tls/server.key"
ca_file = "/etc/lightningstor/tls/ca.crt"

[metadata]
backend = "chainfire"
chainfire_endpoints = ["http://chainfire-1:2379", "http://chainfire-2:2379"]

[storage]
backend = "local"           # "local" | "distributed"
data_dir = "/var/lib/lightningstor/data"
chunk_size_bytes = 8388608  # 8 MiB
shard_depth = 2

[storage.distributed]
# For distributed backend
nodes = ["http://store-1:9002", "http://store-2:9002", "http://store-3:9002"]
replication_factor = 3
placement_strategy = "consistent_hash"

[iam]
endpoint = "http://aegis:9090"
service_account = "lightningstor"
token_path = "/var/run/secrets/iam/token"

[s3]
region = "us-east-1"  # Default region for S3 compat
signature_version = "v4"
presigned_url_ttl_seconds = 3600

[limits]
max_object_size_bytes = 5497558138880  # 5 TiB
max_multipart_parts = 10000
multipart_upload_timeout_hours = 168   # 7 days
max_keys_per_list = 1000

[logging]
level = "info"
format = "json"
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems_of(excinfo: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    exc = excinfo.value
    return list(exc.problems) if isinstance(exc, ConfigProblems) else [str(exc)]


# --------------------------------------------------------------------------
# Defaults and the spec example
# --------------------------------------------------------------------------


def test_defaults_with_nothing_given() -> None:
    """With no file, no environment and no CLI, every value is the documented default."""
    s = load_settings(env={})
    assert s.config_file is None
    assert s.data_dir == "/var/lib/lightningstor"
    assert s.server.s3_addr == "0.0.0.0:9000"
    assert s.server.grpc_addr == "0.0.0.0:9001"
    assert s.server.metrics_addr is None
    assert s.server.workers == default_workers() >= 1  # one per CPU
    assert s.server.shutdown_timeout_seconds == 30.0
    assert s.server.tls is None
    assert s.server.grpc_enabled is True
    assert (s.metadata.backend, s.metadata.chainfire_endpoints) == ("sqlite", ())
    assert s.storage.backend == "local"
    assert s.storage.data_dir == "/var/lib/lightningstor/data"
    assert s.storage.chunk_size_bytes == 8 * 1024 * 1024
    assert s.storage.shard_depth == 2
    assert s.storage.fsync is True
    assert s.storage.inline_threshold_bytes == 64 * 1024
    assert s.iam.authorizer == "local"
    assert (s.iam.endpoint, s.iam.service_account, s.iam.token_path) == (None, None, None)
    assert (s.s3.region, s.s3.signature_version) == ("us-east-1", "both")
    assert s.s3.presigned_url_ttl_seconds == 604800
    assert (s.s3.domain, s.s3.max_clock_skew_seconds) == (None, 900)
    assert s.limits.max_object_size_bytes == 5 * 1024**4
    assert s.limits.max_multipart_parts == 10000
    assert s.limits.multipart_upload_timeout_hours == 168
    assert s.limits.max_keys_per_list == 1000
    assert s.limits.max_xml_body_bytes == 2 * 1024 * 1024
    assert s.limits.max_metadata_bytes == 2048
    assert s.limits.max_header_bytes == 16384
    assert s.limits.max_delete_keys == 1000
    assert s.limits.idle_timeout_seconds == 60
    assert s.limits.max_grpc_calls_per_principal == 8
    assert s.limits.grpc_stream_idle_timeout_seconds == 60
    assert s.limits.grpc_min_ping_interval_seconds == 10
    assert s.limits.max_write_seconds == 6 * 3600
    assert (s.logging.level, s.logging.format, s.logging.access_log) == ("info", "text", True)
    assert s.security.master_key_file == "/var/lib/lightningstor/master.key"


def test_loaded_defaults_match_dataclass_defaults() -> None:
    """load_settings() with nothing given equals Settings() apart from the
    plugin ``options`` copies, so the two sources of defaults cannot drift."""
    loaded = load_settings(env={})
    bare = dataclasses.replace(
        loaded,
        metadata=dataclasses.replace(loaded.metadata, options=Settings().metadata.options),
        storage=dataclasses.replace(loaded.storage, options=Settings().storage.options),
    )
    assert bare == Settings()


def test_spec_example_is_accepted_verbatim(tmp_path: Path) -> None:
    """The §8.1 example loads as is, including backend = "chainfire" (a
    plugin name whose existence is checked at start-up, not here)."""
    path = write(tmp_path, SPEC_EXAMPLE)
    s = load_settings(path, env={})
    assert s.config_file == path
    assert s.server.tls is not None
    assert s.server.tls.cert_file == "/etc/lightningstor/tls/server.crt"
    assert s.server.tls.key_file == "/etc/lightningstor/tls/server.key"
    assert s.server.tls.ca_file == "/etc/lightningstor/tls/ca.crt"
    assert s.metadata.backend == "chainfire"
    assert s.metadata.chainfire_endpoints == ("http://chainfire-1:2379", "http://chainfire-2:2379")
    assert s.storage.data_dir == "/var/lib/lightningstor/data"
    assert s.storage.options["distributed"] == {
        "nodes": ("http://store-1:9002", "http://store-2:9002", "http://store-3:9002"),
        "replication_factor": 3,
        "placement_strategy": "consistent_hash",
    }
    assert s.iam.endpoint == "http://aegis:9090"
    assert s.iam.authorizer == "aegis"  # an endpoint with no authorizer named means aegis, as SPEC says
    assert s.iam.service_account == "lightningstor"
    assert s.iam.token_path == "/var/run/secrets/iam/token"
    assert s.limits.max_object_size_bytes == 5497558138880
    assert s.logging.format == "json"


def test_example_file_loads_and_states_the_defaults() -> None:
    """docs/examples/single-node.toml is valid and every value in it is the
    default: loading it changes nothing but config_file."""
    s = load_settings(str(EXAMPLE), env={})
    assert dataclasses.replace(s, config_file=None) == load_settings(env={})


def test_example_file_lists_every_key() -> None:
    """Every settings field appears in the example file (set or commented out)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    tree = load_settings(env={}).to_dict()
    for section, value in tree.items():
        if section == "config_file":
            continue
        if not isinstance(value, dict):
            assert f"{section} = " in text, section
            continue
        assert f"[{section}]" in text, section
        for key in value:
            if key == "options":
                continue
            marker = "[server.tls]" if key == "tls" else f"{key} = "
            assert marker in text, f"{section}.{key}"


# --------------------------------------------------------------------------
# Precedence and sources
# --------------------------------------------------------------------------

OVERRIDES = [
    # (cli key, env var, file snippet, three values: file, env, cli, getter)
    ("s3_addr", "LIGHTNINGSTOR_S3_ADDR", '[server]\ns3_addr = "{}"',
     ("127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003"), lambda s: s.server.s3_addr),
    ("grpc_addr", "LIGHTNINGSTOR_GRPC_ADDR", '[server]\ngrpc_addr = "{}"',
     ("127.0.0.1:2001", "127.0.0.1:2002", "127.0.0.1:2003"), lambda s: s.server.grpc_addr),
    ("log_level", "LIGHTNINGSTOR_LOG_LEVEL", '[logging]\nlevel = "{}"',
     ("error", "debug", "trace"), lambda s: s.logging.level),
    ("data_dir", "LIGHTNINGSTOR_DATA_DIR", 'data_dir = "{}"',
     ("/srv/file", "/srv/env", "/srv/cli"), lambda s: s.data_dir),
]


@pytest.mark.parametrize(("cli_key", "env_var", "snippet", "values", "get"), OVERRIDES,
                         ids=[o[0] for o in OVERRIDES])
def test_precedence_cli_over_env_over_file(
    tmp_path: Path, cli_key: str, env_var: str, snippet: str, values: tuple[str, str, str], get: Any
) -> None:
    """The same key given in the file, the environment and on the command
    line takes the CLI value; without CLI the env value; without both the file's."""
    file_value, env_value, cli_value = values
    path = write(tmp_path, snippet.format(file_value))
    env = {env_var: env_value}
    assert get(load_settings(path, env=env, cli={cli_key: cli_value})) == cli_value
    assert get(load_settings(path, env=env, cli={cli_key: None})) == env_value
    assert get(load_settings(path, env={})) == file_value


def test_environment_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an ``env`` argument, the process environment is read."""
    monkeypatch.setenv("LIGHTNINGSTOR_S3_ADDR", "127.0.0.1:7777")
    monkeypatch.delenv("LIGHTNINGSTOR_CONFIG", raising=False)
    assert load_settings().server.s3_addr == "127.0.0.1:7777"


def test_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    """LIGHTNINGSTOR_S3_ADDR="" does not override the file (containers often pass empty vars)."""
    path = write(tmp_path, '[server]\ns3_addr = "127.0.0.1:5"')
    settings = load_settings(path, env={"LIGHTNINGSTOR_S3_ADDR": "", "LIGHTNINGSTOR_CONFIG": ""})
    assert settings.server.s3_addr == "127.0.0.1:5"


def test_config_file_choice_cli_then_argument_then_env(tmp_path: Path) -> None:
    """cli['config'] beats the config_file argument, which beats LIGHTNINGSTOR_CONFIG."""
    a = write(tmp_path, "[s3]\nregion = 'from-cli'", "a.toml")
    b = write(tmp_path, "[s3]\nregion = 'from-arg'", "b.toml")
    c = write(tmp_path, "[s3]\nregion = 'from-env'", "c.toml")
    env = {"LIGHTNINGSTOR_CONFIG": c}
    assert load_settings(b, env=env, cli={"config": a}).s3.region == "from-cli"
    assert load_settings(b, env=env).s3.region == "from-arg"
    assert load_settings(env=env).s3.region == "from-env"
    assert load_settings(env=env).config_file == c


def test_error_in_override_names_its_source(tmp_path: Path) -> None:
    """A bad value from the environment or a flag says where it came from."""
    with pytest.raises(ConfigError) as env_err:
        load_settings(env={"LIGHTNINGSTOR_S3_ADDR": "nope"})
    assert problems_of(env_err)[0].startswith("server.s3_addr (from LIGHTNINGSTOR_S3_ADDR): ")
    with pytest.raises(ConfigError) as cli_err:
        load_settings(env={}, cli={"log_level": "loud"})
    assert problems_of(cli_err)[0].startswith("logging.level (from --log-level): must be one of")


def test_unknown_cli_key_is_rejected() -> None:
    """A misspelt CLI settings key is a programming error, not silently ignored."""
    with pytest.raises(ConfigError, match="s3addr"):
        load_settings(env={}, cli={"s3addr": "127.0.0.1:1"})


def test_data_dir_moves_derived_paths_but_not_explicit_ones(tmp_path: Path) -> None:
    """storage.data_dir and security.master_key_file follow data_dir unless set."""
    s = load_settings(env={"LIGHTNINGSTOR_DATA_DIR": "/srv/ls"})
    assert s.storage.data_dir == "/srv/ls/data"
    assert s.security.master_key_file == "/srv/ls/master.key"
    path = write(tmp_path, '[storage]\ndata_dir = "/mnt/chunks"')
    s = load_settings(path, env={}, cli={"data_dir": "/srv/ls"})
    assert s.storage.data_dir == "/mnt/chunks"
    assert s.storage.options["data_dir"] == "/mnt/chunks"


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths are fixed against the start-up directory so a later chdir
    (daemonising, twistd --rundir) cannot change their meaning."""
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={}, cli={"data_dir": "state"})
    assert s.data_dir == os.path.join(str(tmp_path), "state")
    assert s.storage.data_dir == os.path.join(str(tmp_path), "state", "data")


def test_address_values_are_normalised() -> None:
    """':9000' reads as '0.0.0.0:9000'; IPv6 keeps its brackets."""
    s = load_settings(env={}, cli={"s3_addr": ":9000", "grpc_addr": "[::1]:9001"})
    assert s.server.s3_addr == "0.0.0.0:9000"
    assert s.server.grpc_addr == "[::1]:9001"


def test_case_insensitive_choices_are_lower_cased() -> None:
    """LIGHTNINGSTOR_LOG_LEVEL=DEBUG works and reads as 'debug'."""
    assert load_settings(env={"LIGHTNINGSTOR_LOG_LEVEL": "DEBUG"}).logging.level == "debug"


# --------------------------------------------------------------------------
# Validation errors name their key
# --------------------------------------------------------------------------

BAD_VALUES = [
    ('[storage]\nchunk_size_bytes = 5',
     "storage.chunk_size_bytes: must be between 1048576 and 67108864, got 5"),
    ('[storage]\nchunk_size_bytes = 67108865', "storage.chunk_size_bytes: must be between"),
    ('[storage]\nchunk_size_bytes = "8MiB"', "storage.chunk_size_bytes: expected an integer, got a string"),
    ('[storage]\nshard_depth = 5', "storage.shard_depth: must be between 0 and 4, got 5"),
    ('[storage]\nshard_depth = -1', "storage.shard_depth: must be between 0 and 4"),
    ('[storage]\nfsync = 1', "storage.fsync: expected a boolean (true or false), got an integer (1)"),
    ('[storage]\nfsync = "yes"', "storage.fsync: expected a boolean"),
    ('[storage]\ninline_threshold_bytes = 2097152', "storage.inline_threshold_bytes: must be between 0 and"),
    ('[storage]\nfree_delay_seconds = -1', "storage.free_delay_seconds: must be between 0 and 3600, got -1"),
    ('[storage]\nfree_delay_seconds = 3601', "storage.free_delay_seconds: must be between 0 and 3600"),
    ('[storage]\nfree_delay_seconds = "5m"', "storage.free_delay_seconds: expected a number, got a string"),
    ('[storage]\nbackend = ""', "storage.backend: must not be empty"),
    ('[storage]\nbackend = "my backend"', "storage.backend: invalid plugin name"),
    ('[storage]\ndata_dir = 7', "storage.data_dir: expected a string, got an integer (7)"),
    ('[server]\nworkers = true', "server.workers: expected an integer, got a boolean (true)"),
    ('[server]\nworkers = -1', "server.workers: must be between 0 and 1024, got -1"),
    ('[server]\nworkers = 2.0', "server.workers: expected an integer, got a float"),
    ('[server]\nshutdown_timeout_seconds = -1', "server.shutdown_timeout_seconds: must be between 0 and 3600"),
    ('[server]\nshutdown_timeout_seconds = false', "server.shutdown_timeout_seconds: expected a number"),
    ('[server]\nshutdown_timeout_seconds = nan', "server.shutdown_timeout_seconds: must be between"),
    ('[server]\ns3_addr = "localhost"', "server.s3_addr: invalid address 'localhost': expected 'host:port'"),
    ('[server]\ns3_addr = "0.0.0.0:99999"', "server.s3_addr: invalid address '0.0.0.0:99999': port"),
    ('[server]\ngrpc_addr = "::1:9001"', "server.grpc_addr: invalid address '::1:9001': write IPv6"),
    ('[server]\nmetrics_addr = 9100', "server.metrics_addr: expected a string 'host:port', got an integer"),
    ('[server]\ngrpc_addr = "0.0.0.0:9000"', "server.grpc_addr: 0.0.0.0:9000 collides with server.s3_addr"),
    ('[server]\nmetrics_addr = "127.0.0.1:9001"', "server.metrics_addr: 127.0.0.1:9001 collides with server.grpc_addr"),
    ('[server]\ns3_addr = "nope"\ngrpc_addr = "0.0.0.0:9000"', "server.s3_addr: invalid address 'nope'"),
    ('[server]\ngrpc_enabled = "no"', "server.grpc_enabled: expected a boolean"),
    ('[server]\ntls = "on"', "server.tls: expected a table, got a string"),
    ('[server.tls]\ncert_file = "/c"', "server.tls.key_file: required when [server.tls] is present"),
    ('[server.tls]\nkey_file = "/k"', "server.tls.cert_file: required when [server.tls] is present"),
    ('[metadata]\nbackend = 3', "metadata.backend: expected a string, got an integer (3)"),
    ('[metadata]\nchainfire_endpoints = "http://a:2379"', "metadata.chainfire_endpoints: expected an array"),
    ('[metadata]\nchainfire_endpoints = ["a:2379"]', "metadata.chainfire_endpoints: item 0: expected an http://"),
    ('[metadata]\nchainfire_endpoints = ["http://a:1", "http://a:1"]',
     "metadata.chainfire_endpoints: duplicate entries: http://a:1"),
    ('[metadata]\nchainfire_endpoints = ["http://a:notaport"]', "metadata.chainfire_endpoints: item 0: invalid URL"),
    ('[storage.distributed]\nnodes = ["http://a:9002"]\nreplication_factor = 0',
     "storage.distributed.replication_factor: must be at least 1, got 0"),
    ('[storage.distributed]\nnodes = ["http://a:9002"]\nreplication_factor = 2',
     "storage.distributed.replication_factor: 2 is more than the number of nodes (1)"),
    ('[storage.distributed]\nplacement_strategy = "round_robin"',
     "storage.distributed.placement_strategy: must be one of 'random', 'consistent_hash', 'zone_aware'"),
    ('[storage.distributed]\nnodes = [1]', "storage.distributed.nodes: item 0: expected a string"),
    ('[storage.distributed]\nread_timeout_seconds = 0', "storage.distributed.read_timeout_seconds: must be"),
    ('[storage.distributed]\nread_timeout_seconds = "2"', "storage.distributed.read_timeout_seconds: expected a number"),
    ('[storage]\nbackend = "distributed"', "storage.distributed.nodes: required when storage.backend is 'distributed'"),
    ('[storage]\nbackend = "distributed"\n[storage.distributed]\nreplication_factor = 1',
     "storage.distributed.nodes: required when storage.backend is 'distributed'"),
    ('[storage]\nbackend = "distributed"\n[storage.distributed]\nnodes = []',
     "storage.distributed.nodes: must list at least one node"),
    ('[iam]\nauthorizer = "aegis"', "iam.endpoint: required when iam.authorizer is 'aegis'"),
    ('[iam]\nendpoint = "aegis:9090"', "iam.endpoint: expected an http:// or https:// URL"),
    ('[iam]\nservice_account = ""', "iam.service_account: must not be empty"),
    ('[iam]\ntoken_path = ["a"]', "iam.token_path: expected a string, got an array"),
    ('[s3]\nregion = "us east"', "s3.region: must be a region name"),
    ('[s3]\nsignature_version = "v3"', "s3.signature_version: must be one of 'v4', 'v2', 'both', got 'v3'"),
    ('[s3]\npresigned_url_ttl_seconds = 0', "s3.presigned_url_ttl_seconds: must be between 1 and 604800, got 0"),
    ('[s3]\npresigned_url_ttl_seconds = 604801', "s3.presigned_url_ttl_seconds: must be between 1 and 604800"),
    ('[s3]\ndomain = "http://s3.example.com"', "s3.domain: expected a bare DNS name"),
    ('[s3]\ndomain = "s3.example.com:9000"', "s3.domain: expected a bare DNS name"),
    ('[s3]\nmax_clock_skew_seconds = 0', "s3.max_clock_skew_seconds: must be between 1 and 86400"),
    ('[s3]\ndomain = "s3.example.com"\nwebsite_domain = "s3.example.com"', "s3.website_domain: must differ from s3.domain"),
    ('[s3]\ndomain = "s3.example.com"\nwebsite_domain = "example.com"', "s3.website_domain: must differ from s3.domain and not contain it"),
    ('[limits]\nmax_object_size_bytes = 0', "limits.max_object_size_bytes: must be at least 1, got 0"),
    ('[limits]\nmax_multipart_parts = 10001', "limits.max_multipart_parts: must be between 1 and 10000"),
    ('[limits]\nmultipart_upload_timeout_hours = 0', "limits.multipart_upload_timeout_hours: must be between 1 and 1000000"),
    ('[limits]\nmax_keys_per_list = "1000"', "limits.max_keys_per_list: expected an integer, got a string"),
    ('[limits]\nmax_xml_body_bytes = 10', "limits.max_xml_body_bytes: must be between 1024 and"),
    ('[limits]\nmax_metadata_bytes = -1', "limits.max_metadata_bytes: must be between 0 and"),
    ('[limits]\nmax_header_bytes = 100', "limits.max_header_bytes: must be between 1024 and"),
    ('[limits]\nmax_delete_keys = 0', "limits.max_delete_keys: must be between 1 and"),
    ('[limits]\nidle_timeout_seconds = 0', "limits.idle_timeout_seconds: must be between 1 and 86400"),
    ('[limits]\nmax_grpc_calls_per_principal = 0', "limits.max_grpc_calls_per_principal: must be between 1 and 15"),
    ('[limits]\nmax_grpc_calls_per_principal = 16', "limits.max_grpc_calls_per_principal: must be between 1 and 15"),
    ('[limits]\ngrpc_stream_idle_timeout_seconds = 0', "limits.grpc_stream_idle_timeout_seconds: must be between 1 and 3600"),
    ('[limits]\ngrpc_min_ping_interval_seconds = 0', "limits.grpc_min_ping_interval_seconds: must be between 1 and 3600"),
    # At most half the orphan collector's 24 h grace (core/collector.py).
    ('[limits]\nmax_write_seconds = 43201', "limits.max_write_seconds: must be between 1 and 43200"),
    ('[limits]\nmax_write_seconds = 0', "limits.max_write_seconds: must be between 1 and 43200"),
    ('[collector]\ninterval_seconds = 0', "collector.interval_seconds: must be between 1 and 86400"),
    ('[collector]\ngrace_seconds = 1', "collector.grace_seconds: must be between 2 and"),
    # A shorter grace bounds writes more tightly: at most half of it.
    ('[collector]\ngrace_seconds = 3600', "limits.max_write_seconds: 21600 is more than half of "
                                           "collector.grace_seconds (3600)"),
    ('[collector]\ngrace_seconds = 10\n[limits]\nmax_write_seconds = 6\n[storage]\nfree_delay_seconds = 5',
     "limits.max_write_seconds: 6 is more than half of collector.grace_seconds (10)"),
    # Freed chunks waiting out the delay are orphans to the collector
    # (storage/retired.py): its grace must stay at least twice the delay.
    ('[collector]\ngrace_seconds = 500\ninterval_seconds = 100\n[limits]\nmax_write_seconds = 250',
     "storage.free_delay_seconds: 300 is more than half of collector.grace_seconds (500)"),
    ('[storage]\nfree_delay_seconds = 3600\n[collector]\ngrace_seconds = 7000\ninterval_seconds = 3000\n'
     '[limits]\nmax_write_seconds = 60',
     "storage.free_delay_seconds: 3600 is more than half of collector.grace_seconds (7000)"),
    # A pass gap at most half of what the grace leaves after a write's time.
    ('[collector]\ninterval_seconds = 32401', "collector.interval_seconds: 32401 is more than "
                                              "(collector.grace_seconds - limits.max_write_seconds) / 2 "
                                              "((86400 - 21600) / 2 = 32400)"),
    ('[collector]\ninterval_seconds = 3\ngrace_seconds = 9\n[limits]\nmax_write_seconds = 4\n[storage]\nfree_delay_seconds = 4',
     "collector.interval_seconds: 3 is more than (collector.grace_seconds - limits.max_write_seconds) / 2 "
     "((9 - 4) / 2 = 2.5)"),
    ('[logging]\nlevel = "verbose"', "logging.level: must be one of 'trace', 'debug', 'info', 'warn'"),
    ('[logging]\nformat = "xml"', "logging.format: must be one of 'text', 'json', got 'xml'"),
    ('[logging]\naccess_log = "true"', "logging.access_log: expected a boolean"),
    ('[security]\nmaster_key_file = ""', "security.master_key_file: must not be empty"),
    ('data_dir = false', "data_dir: expected a string, got a boolean (false)"),
    ('server = 1', "server: expected a table, got an integer (1)"),
]


@pytest.mark.parametrize(("toml_text", "expected"), BAD_VALUES, ids=[e.split(":")[0] + "|" + t.split("\n")[-1]
                                                                  for t, e in BAD_VALUES])
def test_validation_error_names_key(tmp_path: Path, toml_text: str, expected: str) -> None:
    """Each bad value produces exactly one problem, which starts with its dotted key."""
    path = write(tmp_path, toml_text)
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={})
    problems = problems_of(excinfo)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    """Validation does not stop at the first problem; str() holds them all."""
    path = write(tmp_path, "[server]\nworkers = -1\n[s3]\nregion = 'a b'\n[limits]\nmax_delete_keys = 0\n")
    with pytest.raises(ConfigProblems) as excinfo:
        load_settings(path, env={})
    keys = [p.split(":")[0] for p in excinfo.value.problems]
    assert keys == ["server.workers", "s3.region", "limits.max_delete_keys"]
    assert str(excinfo.value).count("\n") == 2


def test_single_problem_message_is_the_problem(tmp_path: Path) -> None:
    """With one problem, str(error) is exactly that problem (no header)."""
    path = write(tmp_path, "[storage]\nchunk_size_bytes = 5\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={})
    assert str(excinfo.value) == "storage.chunk_size_bytes: must be between 1048576 and 67108864, got 5"


# --------------------------------------------------------------------------
# Unknown keys and plugin sub-tables
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml_text", "expected"),
    [
        ('[server]\ns3_adr = "0.0.0.0:9000"', "unknown key 'server.s3_adr' (did you mean 's3_addr'?)"),
        ('[servr]\nworkers = 2', "unknown key 'servr' (did you mean 'server'?)"),
        ('[server.tsl]\ncert_file = "/c"', "unknown key 'server.tsl' (did you mean 'tls'?)"),
        ('[storage]\nchunk_size = 1048576', "unknown key 'storage.chunk_size' (did you mean 'chunk_size_bytes'?)"),
        ('[storage.distributed]\nnode = ["http://a:1"]',
         "unknown key 'storage.distributed.node' (did you mean 'nodes'?)"),
        ('[metadata]\nchainfire_endpoint = ["http://a:1"]',
         "unknown key 'metadata.chainfire_endpoint' (did you mean 'chainfire_endpoints'?)"),
        ('[logging]\ncolour = true', "unknown key 'logging.colour' (known keys: access_log, format, level)"),
        ('[s3.cors]\nx = 1', ("unknown key 's3.cors' (known keys: block_public_access, default_object_ownership, domain, "
                              "max_clock_skew_seconds, "
                              "presigned_url_ttl_seconds, region, signature_version, website_domain)")),
    ],
)
def test_unknown_key_is_an_error_with_suggestion(tmp_path: Path, toml_text: str, expected: str) -> None:
    """Misspelt keys are errors, suggesting the nearest known key or listing them."""
    path = write(tmp_path, toml_text)
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={})
    assert problems_of(excinfo) == [expected]


def test_plugin_sub_tables_pass_through(tmp_path: Path) -> None:
    """[storage.<plugin>] and [metadata.<plugin>] of other plugins are not
    validated here and reach the factory in ``options``, with the effective
    values of the known keys beside them."""
    path = write(
        tmp_path,
        '[storage]\nbackend = "rados"\n[storage.rados]\npool = "objects"\nanything = [1, 2]\n'
        '[storage.rados.tuning]\nx = 1\n'
        '[metadata.sqlite]\npath = "/tmp/m.db"\nsynchronous = "FULL"\n',
    )
    s = load_settings(path, env={})
    assert s.storage.backend == "rados"
    assert s.storage.options["rados"] == {"pool": "objects", "anything": (1, 2), "tuning": {"x": 1}}
    assert s.storage.options["backend"] == "rados"
    assert s.storage.options["chunk_size_bytes"] == 8 * 1024 * 1024
    assert s.metadata.options["sqlite"] == {"path": "/tmp/m.db", "synchronous": "FULL"}
    assert s.metadata.options["backend"] == "sqlite"


def test_unknown_scalar_next_to_plugin_tables_is_still_an_error(tmp_path: Path) -> None:
    """Only table-valued unknown keys are plugin sub-tables; a scalar is a typo."""
    path = write(tmp_path, '[metadata]\npath = "/tmp/m.db"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={})
    assert problems_of(excinfo)[0].startswith("unknown key 'metadata.path'")


def test_options_are_read_only(tmp_path: Path) -> None:
    """Plugins receive options they cannot mutate under the other components."""
    path = write(tmp_path, '[storage.rados]\npool = "objects"\n')
    options = load_settings(path, env={}).storage.options
    with pytest.raises(TypeError):
        options["backend"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        options["rados"]["pool"] = "x"


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after loading."""
    s = load_settings(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.server.workers = 4  # type: ignore[misc]


def test_to_dict_is_plain_and_json_serialisable(tmp_path: Path) -> None:
    """to_dict gives plain dicts/lists (for PluginContext.settings) that JSON accepts."""
    d = load_settings(write(tmp_path, SPEC_EXAMPLE), env={}).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["server"]["tls"]["ca_file"] == "/etc/lightningstor/tls/ca.crt"
    assert d["storage"]["options"]["distributed"]["nodes"][0] == "http://store-1:9002"
    assert type(d["metadata"]["chainfire_endpoints"]) is list


# --------------------------------------------------------------------------
# The file itself
# --------------------------------------------------------------------------


def test_toml_syntax_error_reports_file_and_line(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the line it is on."""
    path = write(tmp_path, '[server]\nworkers = 2\ns3_addr = "unterminated\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={})
    message = str(excinfo.value)
    assert message.startswith(f"config file {path}: invalid TOML: ")
    assert "line 3" in message


def test_missing_config_file(tmp_path: Path) -> None:
    """A missing file is an error naming it."""
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match=r"^config file .*absent\.toml: No such file"):
        load_settings(path, env={})


def test_missing_config_file_from_env_says_so(tmp_path: Path) -> None:
    """When LIGHTNINGSTOR_CONFIG chose the file, the error says so."""
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="from LIGHTNINGSTOR_CONFIG"):
        load_settings(env={"LIGHTNINGSTOR_CONFIG": path})


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    """A directory instead of a file is reported, not a traceback."""
    with pytest.raises(ConfigError, match="config file"):
        load_settings(str(tmp_path), env={})


def test_non_utf8_file(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError naming the file."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[s3]\nregion = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml"):
        load_settings(str(path), env={})


# --------------------------------------------------------------------------
# Addresses and endpoints
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:9000", ("0.0.0.0", 9000)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9000", ("::1", 9000)),
        ("[::]:9001", ("::", 9001)),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
        (":9000", ("0.0.0.0", 9000)),
        ("localhost:65535", ("localhost", 65535)),
        ("store-1.example.com:9002", ("store-1.example.com", 9002)),
        (" 10.0.0.1:80 ", ("10.0.0.1", 80)),
    ],
)
def test_parse_address_accepts(text: str, expected: tuple[str, int]) -> None:
    """Listen addresses in their usual spellings, IPv6 in brackets."""
    assert parse_address(text, key="server.s3_addr") == expected


@pytest.mark.parametrize(
    "text",
    ["9000", "0.0.0.0", "0.0.0.0:", "0.0.0.0:65536", "0.0.0.0:-1", "0.0.0.0:http", "::1:9000",
     "[::1]9000", "[::1:9000", "[zz]:9000", "999.1.1.1:80", "bad host:80", "-x:80", ""],
)
def test_parse_address_rejects_naming_key(text: str) -> None:
    """Bad addresses raise ConfigError whose message starts with the key."""
    with pytest.raises(ConfigError) as excinfo:
        parse_address(text, key="server.grpc_addr")
    assert str(excinfo.value).startswith("server.grpc_addr: ")


def test_parse_address_rejects_non_string() -> None:
    """A non-string (e.g. a TOML integer) is a typed error, not a crash."""
    with pytest.raises(ConfigError, match="^k: expected a string"):
        parse_address(9000, key="k")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["0.0.0.0:9000", "[::1]:9000", "localhost:1"])
def test_format_address_round_trips(text: str) -> None:
    """format_address inverts parse_address."""
    assert format_address(*parse_address(text, key="k")) == text


@pytest.mark.parametrize(
    ("host", "port", "description"),
    [
        ("0.0.0.0", 9000, "tcp:port=9000:interface=0.0.0.0"),
        ("127.0.0.1", 0, "tcp:port=0:interface=127.0.0.1"),
        ("::1", 9000, "tcp:port=9000:interface=\\:\\:1"),
        ("", 9000, "tcp:port=9000"),
    ],
)
def test_endpoint_description(host: str, port: int, description: str) -> None:
    """Twisted endpoint strings, with IPv6 colons escaped."""
    assert endpoint_description(host, port) == description


@pytest.mark.parametrize(("host", "port"), [("0.0.0.0", 9000), ("::1", 9001), ("fe80::1%eth0", 80)])
def test_endpoint_description_parses_back_in_twisted(host: str, port: int) -> None:
    """serverFromString understands the description and listens on exactly
    that interface and port (checked against a MemoryReactor)."""
    reactor = MemoryReactor()
    endpoint = serverFromString(reactor, endpoint_description(host, port))
    endpoint.listen(Factory.forProtocol(Protocol))
    (listened_port, _factory, _backlog, interface) = reactor.tcpServers[0]
    assert (interface, listened_port) == (host, port)


def test_max_write_seconds_limit_leaves_the_collector_half_its_grace() -> None:
    """No write may last longer than half the collector's grace period: the
    other half covers its commit (core/collector.py, storage/chunks.py)."""
    from lightningstor.config import MAX_WRITE_SECONDS_LIMIT
    from lightningstor.core.collector import GRACE_SECONDS

    assert 2 * MAX_WRITE_SECONDS_LIMIT <= GRACE_SECONDS


def test_collector_section(tmp_path: Path) -> None:
    """``[collector]`` defaults to an hourly pass and the 24 h grace; a short
    grace loads with a write bound of at most half of it, and an interval
    of at most half of what the grace leaves after that bound."""
    from lightningstor.core.collector import GRACE_SECONDS

    s = load_settings(env={})
    assert (s.collector.interval_seconds, s.collector.grace_seconds) == (3600.0, GRACE_SECONDS)
    path = write(tmp_path, "[collector]\ninterval_seconds = 1\ngrace_seconds = 4\n[limits]\nmax_write_seconds = 2\n"
                           "[storage]\nfree_delay_seconds = 2\n")
    s = load_settings(path, env={})
    assert (s.collector.interval_seconds, s.collector.grace_seconds, s.limits.max_write_seconds) == (1.0, 4.0, 2)
    assert s.storage.free_delay_seconds == 2.0  # at most half the grace, as a write's bound
    # The longest pass interval the defaults allow: (86400 - 21600) / 2.
    s = load_settings(write(tmp_path, "[collector]\ninterval_seconds = 32400\n"), env={})
    assert s.collector.interval_seconds == 32400.0


def test_audit_when_full(tmp_path: Path) -> None:
    """``[audit] when_full``: drop (the default) or refuse; refuse needs a
    queue with room for gRPC calls in flight."""
    assert load_settings(env={}).audit.when_full == "drop"
    ok = write(tmp_path, '[audit]\nwhen_full = "refuse"\nmax_queued_records = 64\n')
    assert load_settings(ok, env={}).audit.when_full == "refuse"
    with pytest.raises(ConfigError) as small:
        load_settings(write(tmp_path, '[audit]\nwhen_full = "refuse"\nmax_queued_records = 63\n'), env={})
    assert problems_of(small) == [
        'audit.max_queued_records: 63 is below 64, the least audit.when_full = "refuse" needs '
        "(room for the records of gRPC calls in flight)"
    ]
    with pytest.raises(ConfigError) as unknown:
        load_settings(write(tmp_path, '[audit]\nwhen_full = "block"\n'), env={})
    assert problems_of(unknown)[0].startswith("audit.when_full: must be one of")
    # A queue this small is fine when records may be dropped.
    assert load_settings(write(tmp_path, "[audit]\nmax_queued_records = 1\n"), env={}).audit.max_queued_records == 1


@pytest.mark.parametrize(
    ("table", "authorizer"),
    [
        ('[iam]\nendpoint = "http://aegis:9090"\n', "aegis"),
        ('[iam]\nendpoint = "http://aegis:9090"\nauthorizer = "local"\n', "local"),
        ("[iam]\ncache_seconds = 2\n", "local"),
        ("", "local"),
    ],
)
def test_an_iam_endpoint_without_an_authorizer_means_aegis(tmp_path: Path, table: str, authorizer: str) -> None:
    """SPEC's [iam] table names an endpoint and no authorizer, and says every
    operation is authorized via aegis: such a table selects aegis (it was
    accepted and ignored, the local authorizer deciding).  Naming one keeps it."""
    path = tmp_path / "c.toml"
    path.write_text(table)
    assert load_settings(str(path), env={}).iam.authorizer == authorizer


def test_an_integer_override_takes_ascii_digits_only() -> None:
    """LIGHTNINGSTOR_WORKERS=² passed str.isdigit() and then failed int():
    a traceback from the server and from check-config."""
    with pytest.raises(ConfigError, match="server.workers"):
        load_settings(env={"LIGHTNINGSTOR_WORKERS": "²"})
    assert load_settings(env={"LIGHTNINGSTOR_WORKERS": " 3 "}).server.workers == 3
    # A negative number is out of range, not "a string" (it was: "expected an
    # integer, got a string ('-1')").
    with pytest.raises(ConfigError, match=r"server.workers \(from --workers\): must be between 0 and 1024, got -1"):
        load_settings(env={}, cli={"workers": "-1"})


def test_multipart_upload_timeout_is_bounded(tmp_path: Path) -> None:
    """10**330 hours passed check-config and overflowed at start-up."""
    path = tmp_path / "c.toml"
    path.write_text("[limits]\nmultipart_upload_timeout_hours = 1" + "0" * 330 + "\n")
    with pytest.raises(ConfigError, match="limits.multipart_upload_timeout_hours"):
        load_settings(str(path), env={})
