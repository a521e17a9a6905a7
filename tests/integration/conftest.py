"""Fixtures: the real server process and real S3 clients pointed at it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import boto3
import pytest
from botocore.config import Config

from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("server") / "data"
    data.mkdir()
    proc = ServerProcess(data).start()
    yield proc
    proc.stop()


def make_client(endpoint: str, **config: object) -> object:
    cfg = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1, "mode": "standard"},
        **config,  # type: ignore[arg-type]
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ROOT_ACCESS_KEY,
        aws_secret_access_key=ROOT_SECRET_KEY,
        region_name="us-east-1",
        config=cfg,
    )


@pytest.fixture(params=["when_supported", "when_required"], scope="session")
def s3(request: pytest.FixtureRequest, server: ServerProcess) -> object:
    """boto3 with default checksum behaviour and with when_required."""
    return make_client(
        server.endpoint,
        request_checksum_calculation=request.param,
        response_checksum_validation=request.param,
    )


@pytest.fixture
def bucket(s3: object) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    yield name
    _empty_and_delete(s3, name)


@pytest.fixture(scope="session")
def c(server: ServerProcess) -> object:
    """One boto3 client (default checksum behaviour), for tests whose subject
    is not the SDK's checksum mode."""
    return make_client(server.endpoint)


@pytest.fixture
def bkt(c: object) -> Iterator[str]:
    """A new bucket on ``c``, removed afterwards with every version and
    delete marker it holds."""
    name = f"b-{uuid.uuid4().hex[:16]}"
    c.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    yield name
    for page in c.get_paginator("list_object_versions").paginate(Bucket=name):  # type: ignore[attr-defined]
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            c.delete_object(Bucket=name, Key=entry["Key"], VersionId=entry["VersionId"])  # type: ignore[attr-defined]
    c.delete_bucket(Bucket=name)  # type: ignore[attr-defined]


def _empty_and_delete(s3: object, name: str) -> None:
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=name)  # type: ignore[attr-defined]
        for page in pages:
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=name, Key=obj["Key"])  # type: ignore[attr-defined]
        s3.delete_bucket(Bucket=name)  # type: ignore[attr-defined]
    except Exception:
        pass


@pytest.fixture
def tmp_data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d
