"""The protocol messages of host_protocol.proto, compiled with grpcio-tools' protoc into a directory."""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path
from types import ModuleType

PROTO = Path(__file__).with_name("host_protocol.proto")


def compile_protocol(out_dir: Path) -> ModuleType:
    """protoc PROTO into `out_dir` and import it: the module the library receives as `protos`."""
    from grpc_tools import protoc  # installed by tests/runtime/requirements.txt (make conformance)

    includes = importlib.resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    status = protoc.main(
        ["protoc", f"-I{includes}", f"-I{PROTO.parent}", f"--python_out={out_dir}", str(PROTO)]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed on {PROTO} (exit {status})")
    spec = importlib.util.spec_from_file_location("host_protocol_pb2", out_dir / "host_protocol_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
