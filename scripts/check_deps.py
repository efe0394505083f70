#!/usr/bin/env python3
"""Checks that the includes of the tree follow the arrows of README "Layout".

  front (server/grpc, server/http) -> gateway -> quota, storage; providers -> gateway; net: leaf

Each rule names a folder and what its files may not include; an include is the path in a
`#include "..."` or `#include <...>` line. Exits 1, listing every violation as
`file:line: includes X (rule)`, when any rule is broken.

  scripts/check_deps.py [--root DIR]     check the tree (default: this checkout)
  scripts/check_deps.py --self-test      check that each rule catches a planted violation
"""
import argparse
import os
import re
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')

# Third-party libraries, by the first component of their include paths.
THIRD_PARTY = ("grpcpp", "grpc", "google", "prometheus", "boost", "nlohmann", "rocksdb", "curl",
               "png.h", "openssl", "zlib.h", "gtest", "gmock", "benchmark", "anyai")
FRONTS = ("server/grpc/", "server/http/")


def only_abseil_and_std(path, own):
    """For leaf libraries: their own headers, Abseil, the standard library, libc/POSIX."""
    if path.startswith((own, "absl/")):
        return None
    first = path.split("/")[0]
    if first in THIRD_PARTY or first in ("server", "quota", "storage", "proto", "tests", "bench"):
        return "may include only Abseil and the standard library"
    return None


def forbid(*prefixes, why):
    def rule(path, _file):
        if any(path == p or path.startswith(p) for p in prefixes):
            return why
        return None
    return rule


def net_internals_stay_in_net(path, file):
    if path.startswith("server/net/internal/") and not file.startswith("server/net/"):
        return "server/net/internal/ is for server/net/ only"
    return None


# (folder, rule): every file under the folder is checked against the rule.
RULES = [
    ("", net_internals_stay_in_net),
    ("quota/", lambda p, _file: only_abseil_and_std(p, "quota/")),
    ("server/net/", lambda p, _file: only_abseil_and_std(p, "server/net/")),
    ("server/grpc/", forbid("server/http/", "boost/", "nlohmann/",
                            why="a front may not include the other front")),
    ("server/http/", forbid("server/grpc/", "grpcpp/", "grpc/",
                            why="a front may not include the other front")),
    ("server/grpc/", forbid("server/metrics/", "prometheus/", "server/app/",
                            why="a front may not include metrics or app")),
    ("server/http/", forbid("server/metrics/", "prometheus/", "server/app/",
                            why="a front may not include metrics or app")),
    ("server/gateway/", forbid(*FRONTS, "server/metrics/", "server/app/", "server/providers/",
                               "server/config/", "prometheus/", "grpcpp/", "boost/",
                               why="the gateway may not include a front, metrics, app, a "
                                   "provider or config")),
    ("server/providers/", forbid(*FRONTS, "server/metrics/", "server/app/", "server/config/",
                                 "prometheus/",
                                 why="a provider may not include a front, metrics, app or config")),
    ("server/providers/builtin/", forbid("server/providers/openai/",
                                         why="a provider may not include the other provider")),
    ("server/providers/openai/", forbid("server/providers/builtin/",
                                        why="a provider may not include the other provider")),
    ("server/config/", forbid(*FRONTS, "server/metrics/", "server/app/", "server/providers/",
                              why="config may not include a front, metrics, app or a provider")),
    ("server/metrics/", forbid(*FRONTS, "server/app/",
                               why="metrics may not include a front or app")),
    ("storage/", forbid("server/", why="storage may not include server/")),
]

SOURCE = (".h", ".cc")


def violations(root):
    found = []
    for folder, rule in RULES:
        top = os.path.join(root, folder)
        for dirpath, dirs, files in os.walk(top):
            # Build trees and installed packages are not the project's sources.
            dirs[:] = [d for d in dirs
                       if not (d.startswith(("build", ".")) or d == "node_modules")]
            for name in sorted(files):
                if not name.endswith(SOURCE):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        why = rule(m.group(2), rel)
                        if why:
                            found.append(f"{rel}:{number}: includes {m.group(2)} ({why})")
    return found


def self_test():
    planted = {
        "quota/a.cc": '#include "storage/key_store.h"',
        "quota/b.cc": "#include <grpcpp/grpcpp.h>",
        "server/net/c.cc": '#include "google/protobuf/message.h"',
        "server/net/d.cc": '#include "server/gateway/errors.h"',
        "server/grpc/e.cc": '#include "server/http/http_api.h"',
        "server/http/f.cc": '#include "server/grpc/grpc_status.h"',
        "server/gateway/g.cc": '#include "server/metrics/metrics.h"',
        "server/gateway/h.h": "#include <prometheus/counter.h>",
        "server/providers/openai/i.cc": '#include "server/http/http_server.h"',
        "server/providers/j.cc": '#include "server/app/server.h"',
        "storage/k.cc": '#include "server/gateway/gateway.h"',
        "server/grpc/l.cc": '#include "server/metrics/metrics.h"',
        "server/http/m.h": "#include <prometheus/registry.h>",
        "server/providers/openai/n.cc": '#include "server/providers/builtin/png_encoder.h"',
        "server/providers/builtin/o.cc": '#include "server/config/config.h"',
        "server/gateway/p.cc": '#include "server/net/internal/quote.h"',
        "tests/server/q.cc": '#include "server/net/internal/authority.h"',
    }
    allowed = {
        "quota/ok.cc": '#include "absl/time/time.h"\n#include <atomic>\n#include "quota/plan.h"',
        "server/net/ok.cc": '#include <arpa/inet.h>\n#include "absl/strings/str_cat.h"\n'
                            '#include "server/net/cidr.h"',
        "server/grpc/ok.cc": '#include "server/gateway/gateway.h"\n#include <grpcpp/grpcpp.h>',
        "server/providers/ok.cc": '#include "server/gateway/provider.h"',
        "server/net/ok2.cc": '#include "server/net/internal/quote.h"',
    }
    with tempfile.TemporaryDirectory() as root:
        for rel, text in {**planted, **allowed}.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w") as f:
                f.write(text + "\n")
        found = violations(root)
    caught = {line.split(":")[0] for line in found}
    ok = True
    for rel in planted:
        if rel not in caught:
            print(f"self-test: the planted violation in {rel} was not caught")
            ok = False
    for rel in allowed:
        if rel in caught:
            print(f"self-test: {rel} was flagged but follows the rules")
            ok = False
    print("self-test:", "every planted violation caught" if ok else "FAILED")
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    found = violations(os.path.abspath(args.root))
    for line in found:
        print(line)
    print(f"{len(found)} include(s) break the layout's arrows" if found
          else "every include follows the layout's arrows")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
