"""Regenerate ``lightningstor/grpc/gen`` from ``proto/lightningstor.proto``.

Run through ``tox -e proto`` (or ``python proto/generate.py``) after editing
the proto; the generated files are committed so that ``pip install .`` needs
no code generator.  protoc writes ``import lightningstor_pb2`` (a top-level
module) into the gRPC stubs; that line is rewritten to the package path so
``import lightningstor.grpc.gen.lightningstor_pb2_grpc`` works when installed.
A unit test regenerates into a temporary directory and compares, so a proto
edit without regeneration fails the suite.

``proto/lightningstor_node.proto`` (the storage nodes' chunk service) is
generated the same way into ``lightningstor/node/gen`` by
:func:`generate_node`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTO = "lightningstor.proto"
DEFAULT_OUT = ROOT / "lightningstor" / "grpc" / "gen"
PACKAGE = "lightningstor.grpc.gen"
NODE_PROTO = "lightningstor_node.proto"
NODE_OUT = ROOT / "lightningstor" / "node" / "gen"
NODE_PACKAGE = "lightningstor.node.gen"
_NOQA = "# ruff: noqa\n"


def _generate(out: Path, proto: str, package: str, *, noqa: bool) -> list[Path]:
    """Run protoc for ``proto`` into ``out``, point the gRPC stubs' import of
    the messages module at ``package``, and return the three files written.

    ``noqa`` prefixes the files with a ruff exemption (generated code follows
    protoc's style, not ours; the exemption travels with the files).
    """
    import grpc_tools
    from grpc_tools import protoc

    stem = proto.removesuffix(".proto")  # lightningstor, lightningstor_node
    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        str(PROTO_DIR / proto),
    ])
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    alias = stem.replace("_", "__") + "__pb2"  # protoc's name for the module
    top_level = re.compile(rf"^import {stem}_pb2 as {alias}$", re.MULTILINE)
    stubs = out / f"{stem}_pb2_grpc.py"
    fixed, count = top_level.subn(f"from {package} import {stem}_pb2 as {alias}", stubs.read_text())
    if count != 1:
        raise SystemExit(f"generated stubs no longer import {stem}_pb2 the expected way")
    stubs.write_text(fixed)
    files = [out / f"{stem}_pb2.py", out / f"{stem}_pb2.pyi", stubs]
    if noqa:
        for path in files:
            path.write_text(_NOQA + path.read_text())
    return files


def generate(out: Path) -> list[Path]:
    """The API's ``_pb2``, ``_pb2_grpc`` and ``.pyi`` files, written into ``out``."""
    return _generate(out, PROTO, PACKAGE, noqa=False)


def generate_node(out: Path) -> list[Path]:
    """Like :func:`generate` for the storage-node proto."""
    return _generate(out, NODE_PROTO, NODE_PACKAGE, noqa=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--node-out", type=Path, default=NODE_OUT, help="output directory of the node stubs")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(f"wrote {path}")
    for path in generate_node(args.node_out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
