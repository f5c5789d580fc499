"""A minimal Python client for facegate, generated from proto/ with grpcio-tools.

The stubs are generated on first use into a cache directory, so the only
requirements are `pip install grpcio grpcio-tools`.
"""

import os
import pathlib
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"


def _generate(names):
    """Generates (once, again when a .proto is newer) the Python modules of
    proto/facegate/v1/NAME.proto for each name, and puts them on sys.path."""
    out = pathlib.Path(os.environ.get("FACEGATE_PY_STUBS", tempfile.gettempdir())) / "facegate-py-stubs"
    for name in names:
        marker = out / "facegate" / "v1" / f"{name}_pb2_grpc.py"
        proto = PROTO_DIR / "facegate" / "v1" / f"{name}.proto"
        if not marker.exists() or marker.stat().st_mtime < proto.stat().st_mtime:
            from grpc_tools import protoc

            out.mkdir(parents=True, exist_ok=True)
            rc = protoc.main(
                ["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}", str(proto)]
            )
            if rc != 0:
                raise RuntimeError(f"grpc_tools.protoc failed with {rc} on {name}.proto")
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))


def load_stubs():
    """Generates (once) and imports the facegate.v1 Matcher's message and service modules."""
    _generate(["matcher"])
    from facegate.v1 import matcher_pb2, matcher_pb2_grpc

    return matcher_pb2, matcher_pb2_grpc


def load_manifest_stubs():
    """Generates (once) and imports the facegate.v1 Manifests service's
    modules (the back office's: staging manifests for 1:few search)."""
    _generate(["matcher", "manifests"])
    from facegate.v1 import manifests_pb2, manifests_pb2_grpc

    return manifests_pb2, manifests_pb2_grpc


def load_encounter_stubs():
    """Generates (once) and imports the facegate.v1 Encounters service's
    modules (the back office's: travel histories, stays, overstays,
    reconciliation, officers' corrections)."""
    _generate(["matcher", "encounters"])
    from facegate.v1 import encounters_pb2, encounters_pb2_grpc

    return encounters_pb2, encounters_pb2_grpc
