"""Identify and verify one synthetic probe against a running facegate.

    python3 examples/python/identify.py [ADDRESS]

ADDRESS defaults to 127.0.0.1:50051 (the demo server of the README). The probe
is random, so expect "no match": this shows the calls, not the accuracy.
Against a server with --port-keys, set FACEGATE_TOKEN to a key made by
`facegate keygen DEMO-PORT`.
"""

import os
import random
import sys

import grpc

from facegate_client import load_stubs

pb, rpc = load_stubs()


class BearerToken(grpc.UnaryUnaryClientInterceptor):
    """Adds `authorization: Bearer TOKEN` to every call."""

    def __init__(self, token):
        self.header = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(self, continuation, details, request):
        metadata = list(details.metadata or []) + [self.header]
        details = details._replace(metadata=metadata)
        return continuation(details, request)


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    token = os.environ.get("FACEGATE_TOKEN")
    with grpc.insecure_channel(address) as plain:
        channel = grpc.intercept_channel(plain, BearerToken(token)) if token else plain
        matcher = rpc.MatcherStub(channel)
        info = matcher.GetGalleryInfo(pb.GetGalleryInfoRequest(), timeout=5)
        print(f"gallery: {info.subjects} subjects, {info.rows} templates, d={info.dimension}, "
              f"model {info.model_tag}, engine {info.engine}")
        probe = [random.gauss(0, 1) for _ in range(info.dimension)]
        capture = pb.CaptureContext(port_id="DEMO-PORT", lane="1", direction=pb.DIRECTION_ENTRY)
        resp = matcher.Identify(
            pb.IdentifyRequest(probe=probe, top_k=3, model_tag=info.model_tag, request_id="py-1", capture=capture),
            timeout=2,
        )
        print(f"identify: match={resp.match} (threshold {resp.threshold:.2f}), {resp.timing.total_us} us")
        for c in resp.candidates:
            print(f"  rank {c.rank}: {c.subject_id} score {c.score:.3f}")
        best = resp.candidates[0].subject_id
        v = matcher.Verify(pb.VerifyRequest(probe=probe, subject_id=best, model_tag=info.model_tag), timeout=2)
        print(f"verify against {best}: match={v.match} score {v.score:.3f} over {v.templates_compared} templates")


if __name__ == "__main__":
    main()
