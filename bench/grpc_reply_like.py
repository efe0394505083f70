#!/usr/bin/env python3
"""Writes what one anyai-server gRPC call answered, as the empty anchor's --metadata file.

Makes --calls calls of --method with the request in --body (a framed gRPC body, as
`grpc_load --dump_grpc_body` writes it), and records the last one's initial and trailing
metadata and, if it failed, its status (code, message, grpc-status-details-bin), one line each
(bench/anchors/grpc-empty/server.cc says the format). The empty service then answers every call
with the same metadata, so bench/grpc_metadata_cost.sh can tell what gRPC itself charges for
anyai's rate-limit metadata and error details from what anyai's own code costs.

  grpc_reply_like.py --target=127.0.0.1:50051 --body=chat.bin --calls=12 --out=refused.txt
"""
import argparse

import grpc

# Set by gRPC itself on every answer: the anchor's gRPC adds its own.
TRANSPORT = {"grpc-status", "grpc-message", "grpc-status-details-bin", "content-type",
             "grpc-accept-encoding", "grpc-encoding", "date", "user-agent"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--method", default="/anyai.v1.AnyAI/CreateChatCompletion")
    p.add_argument("--body", required=True)
    p.add_argument("--metadata", action="append", default=[], help="KEY:VALUE")
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    with open(a.body, "rb") as f:
        request = f.read()[5:]  # the gRPC frame's 5-byte prefix off
    metadata = [tuple(m.split(":", 1)) for m in a.metadata]
    channel = grpc.insecure_channel(a.target)
    call = channel.unary_unary(a.method)  # bytes in, bytes out
    lines = []
    for i in range(a.calls):
        lines = []
        try:
            _, c = call.with_call(request, metadata=metadata, timeout=10)
            initial, trailing, status = c.initial_metadata(), c.trailing_metadata(), None
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                # Not an answer to copy (the server is down, a deadline passed, a bad request).
                raise SystemExit(f"grpc_reply_like: call {i + 1} failed: {e.code()} {e.details()}")
            initial, trailing = e.initial_metadata(), e.trailing_metadata()
            details = dict(trailing).get("grpc-status-details-bin", b"")
            status = (e.code().value[0], e.details().encode(), details)
        for kind, entries in (("initial", initial), ("trailing", trailing)):
            for k, v in entries or ():
                if k in TRANSPORT:
                    continue
                v = v if isinstance(v, bytes) else v.encode()
                lines.append(f"{kind} {k} {v.hex() or '-'}")
        if status is not None:
            code, message, details = status
            lines.append(f"status {code} {message.hex() or '-'} {details.hex() or '-'}")
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
