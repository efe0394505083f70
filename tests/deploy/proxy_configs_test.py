"""deploy_proxy_configs: the cluster's proxy configs, statically.

- deploy/haproxy/anyai.cfg: `haproxy -c` accepts it after a minimal global section (as after
  Debian's /etc/haproxy/haproxy.cfg); both backends hash the same tenant variable on a
  consistent ring and list the same server names, ids and weights in the same order (what makes
  one tenant's HTTP and gRPC calls reach one replica; cluster_test checks that with real
  traffic); the gRPC servers speak h2 and track the HTTP servers' health check.
- deploy/envoy/anyai.yaml: valid YAML (no Envoy binary on the build machines); both clusters
  RING_HASH with the same ring settings and hostname-based hashing over the same hostnames and
  weights; both routes hash the authorization header, else the source IP.

Usage: proxy_configs_test.py --haproxy=/usr/sbin/haproxy
"""

import os
import re
import subprocess
import tempfile
import unittest

import yaml

import deploy_testing
from deploy_testing import DEPLOY

HAPROXY_CFG = os.path.join(DEPLOY, "haproxy", "anyai.cfg")
ENVOY_YAML = os.path.join(DEPLOY, "envoy", "anyai.yaml")


def haproxy_sections(text):
    """{(kind, name): [lines]} of the config's sections, comments dropped."""
    sections, current = {}, None
    for raw in text.splitlines():
        line = re.sub(r"\s+#.*$", "", raw).rstrip()
        if not line or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            words = line.split()
            current = (words[0], words[1] if len(words) > 1 else "")
            sections[current] = []
        elif current is not None:
            sections[current].append(line.strip())
    return sections


class HaproxyConfigTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        with open(HAPROXY_CFG) as f:
            cls.sections = haproxy_sections(f.read())

    def test_haproxy_c_accepts_the_config(self):
        with tempfile.TemporaryDirectory(prefix="anyai-haproxy-") as tmp:
            global_cfg = os.path.join(tmp, "global.cfg")
            with open(global_cfg, "w") as f:
                f.write("global\n  maxconn 1024\n")
            result = subprocess.run([deploy_testing.ARGS["haproxy"], "-c", "-f", global_cfg,
                                     "-f", HAPROXY_CFG], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, timeout=60)
            print(result.stdout)
            self.assertEqual(result.returncode, 0, result.stdout)
            self.assertIn("Configuration file is valid", result.stdout)
            self.assertNotIn("WARNING", result.stdout)

    def servers(self, backend):
        out = []
        for line in self.sections[("backend", backend)]:
            if line.startswith("server "):
                words = line.split()
                opts = dict(zip(words[3::1], words[4::1]))
                out.append((words[1], opts.get("id"), opts.get("weight"), line))
        return out

    def test_both_backends_build_the_same_consistent_ring(self):
        for backend in ("anyai_http", "anyai_grpc"):
            with self.subTest(backend=backend):
                lines = self.sections[("backend", backend)]
                self.assertIn("balance hash var(txn.anyai_tenant)", lines)
                self.assertIn("hash-type consistent", lines)
                self.assertIn("default-server", " ".join(lines))
                self.assertRegex(" ".join(lines), r"default-server .*weight 100")
        http, grpc = self.servers("anyai_http"), self.servers("anyai_grpc")
        self.assertEqual(len(http), 3)
        # Same names and ids in the same order; no per-server weight that could differ.
        self.assertEqual([(n, i) for n, i, _, _ in http], [(n, i) for n, i, _, _ in grpc])
        self.assertEqual(len({i for _, i, _, _ in http}), 3)
        self.assertTrue(all(w is None for _, _, w, _ in http + grpc))
        for name, _, _, line in grpc:
            self.assertIn("proto h2", line)
            self.assertIn("track anyai_http/" + name, line)
        for _, _, _, line in http:
            self.assertRegex(line, r"\bcheck\b")

    def test_health_check_and_tenant(self):
        http_backend = self.sections[("backend", "anyai_http")]
        self.assertIn("option httpchk GET /readyz", http_backend)
        self.assertRegex(" ".join(http_backend), r"inter 1s fastinter 250ms .*fall 2 rise 3")
        for front in ("anyai_http", "anyai_grpc"):
            with self.subTest(frontend=front):
                lines = " ".join(self.sections[("frontend", front)])
                # The token with its Bearer scheme (any case) and spaces removed, else the
                # client's address.
                self.assertIn("req.fhdr(authorization),regsub('^bearer +','',i),"
                              "regsub(' +$','')", lines)
                self.assertIn("src,ipmask(32,64)", lines)
        self.assertIn("url_param(key)", " ".join(self.sections[("frontend", "anyai_http")]))
        self.assertRegex(" ".join(self.sections[("frontend", "anyai_grpc")]), r"bind \S+ proto h2")
        self.assertIn("http-request return status 404 if { path /metrics }",
                      self.sections[("frontend", "anyai_http")])


class EnvoyConfigTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        with open(ENVOY_YAML) as f:
            cls.config = yaml.safe_load(f)

    def test_clusters_are_identical_ring_hash_rings(self):
        clusters = {c["name"]: c for c in self.config["static_resources"]["clusters"]}
        self.assertEqual(set(clusters), {"anyai_http", "anyai_grpc"})
        rings = []
        for name, c in clusters.items():
            with self.subTest(cluster=name):
                self.assertEqual(c["lb_policy"], "RING_HASH")
                self.assertTrue(c["common_lb_config"]["consistent_hashing_lb_config"]
                                ["use_hostname_for_hashing"])
                hosts = [(e["endpoint"]["hostname"], e.get("load_balancing_weight"))
                         for group in c["load_assignment"]["endpoints"]
                         for e in group["lb_endpoints"]]
                self.assertEqual(len(hosts), 3)
                self.assertEqual(c["health_checks"][0]["http_health_check"]["path"], "/readyz")
                rings.append((c["ring_hash_lb_config"], hosts))
        self.assertEqual(rings[0], rings[1])
        grpc = clusters["anyai_grpc"]
        self.assertIn("http2_protocol_options", str(grpc["typed_extension_protocol_options"]))

    def test_both_routes_hash_the_authorization_header_else_the_source_ip(self):
        listeners = {l["name"]: l for l in self.config["static_resources"]["listeners"]}
        self.assertEqual(set(listeners), {"anyai_http", "anyai_grpc"})
        for name, listener in listeners.items():
            with self.subTest(listener=name):
                hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
                routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
                route = [r for r in routes if "route" in r][-1]["route"]
                self.assertEqual(route["cluster"], name)
                policy = route["hash_policy"]
                self.assertIn({"header": {"header_name": "authorization"}, "terminal": True},
                              policy)
                self.assertEqual(policy[-1], {"connection_properties": {"source_ip": True}})
                self.assertLess(policy.index({"header": {"header_name": "authorization"},
                                              "terminal": True}), len(policy) - 1)


if __name__ == "__main__":
    deploy_testing.run_tests(flags=("haproxy",))
