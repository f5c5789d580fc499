"""Shared fixtures of the Python client tests: a synthetic population built
with facegate-index, and the real facegate server over it, both from the
binaries the Rust tests build (target/debug, or $CARGO_TARGET_DIR/debug)."""

import os
import pathlib
import re
import subprocess
import sys

import grpc
import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "examples" / "python"))
from facegate_client import load_encounter_stubs, load_manifest_stubs, load_stubs  # noqa: E402

pb, rpc = load_stubs()
mpb, mrpc = load_manifest_stubs()
epb, erpc = load_encounter_stubs()
BIN = REPO / os.environ.get("CARGO_TARGET_DIR", "target") / "debug"
TAG = "py-test@1"


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    d = tmp_path_factory.mktemp("pop")
    idx = str(BIN / "facegate-index")
    subprocess.run([idx, "synth", "--out-dir", d, "--subjects", "300", "--probes", "40", "--dim", "128",
                    "--mated-fraction", "1.0", "--seed", "5"], check=True, capture_output=True)
    subprocess.run([idx, "build", "--embeddings", d / "gallery.npy", "--ids", d / "gallery_ids.txt",
                    "--out", d / "g.fgal", "--model-tag", TAG], check=True, capture_output=True)
    return d


def serve(gallery, data_dir, *extra):
    """Starts the real server on ephemeral ports; yields (ports' address,
    back office's address), then stops it and checks it drained cleanly."""
    proc = subprocess.Popen([str(BIN / "facegate"), "serve", "--listen", "127.0.0.1:0",
                             "--metrics-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                             "--gallery", str(gallery), "--data-dir", str(data_dir), *map(str, extra)],
                            stdout=subprocess.PIPE, text=True)
    admin = ports = None
    while ports is None:
        line = proc.stdout.readline()
        assert line, "facegate exited before listening"
        admin = admin or (m := re.match(r"facegate admin listening on (\S+)", line)) and m.group(1)
        ports = (m := re.match(r"facegate listening on (\S+)", line)) and m.group(1)
    yield ports, admin
    proc.terminate()
    assert proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def server(population):
    """The server's two listeners: (ports' address, back office's address)."""
    yield from serve(population / "g.fgal", population / "data")


@pytest.fixture(scope="module")
def matcher(server):
    channel = grpc.insecure_channel(server[0])
    yield rpc.MatcherStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def manifests(server):
    channel = grpc.insecure_channel(server[1])
    yield mrpc.ManifestsStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def encounters(server):
    channel = grpc.insecure_channel(server[1])
    yield erpc.EncountersStub(channel)
    channel.close()
