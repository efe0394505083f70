"""deploy_nginx_config: deploy/nginx/anyai.conf, nginx in front of ONE replica, is a valid nginx
config (`nginx -t`, inside a minimal nginx.conf whose http {} includes it, as /etc/nginx/conf.d
does). It hashes nothing: nginx's consistent hash rings are built from address:port, so it
cannot keep one tenant's HTTP and gRPC calls on one replica (deploy/haproxy/anyai.cfg does, and
cluster_test checks it). The tenant map it keeps for HTTP-only deployments is the server's.

Usage: nginx_config_test.py --nginx=/usr/sbin/nginx
"""

import os
import re
import subprocess
import tempfile
import unittest

import deploy_testing
from deploy_testing import DEPLOY

CONF = os.path.join(DEPLOY, "nginx", "anyai.conf")


def upstreams(text):
    """{name: body} of every upstream block."""
    return dict(re.findall(r"(?ms)^upstream\s+(\S+)\s*\{(.*?)^\}", text))


class NginxConfigTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        with open(CONF) as f:
            cls.text = re.sub(r"#[^\n]*", "", f.read())

    def test_nginx_t_accepts_the_config(self):
        with tempfile.TemporaryDirectory(prefix="anyai-nginx-") as tmp:
            main = os.path.join(tmp, "nginx.conf")
            with open(main, "w") as f:
                f.write("events {}\nhttp {\n  include %s;\n}\n" % CONF)
            result = subprocess.run(
                [deploy_testing.ARGS["nginx"], "-t", "-p", tmp + "/", "-c", main,
                 "-e", os.path.join(tmp, "error.log"), "-g", "pid %s/nginx.pid;" % tmp],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
            print(result.stdout)
            self.assertEqual(result.returncode, 0, result.stdout)
            self.assertIn("test is successful", result.stdout)

    def test_one_replica_and_no_hash(self):
        blocks = upstreams(self.text)
        self.assertEqual(set(blocks), {"anyai_http", "anyai_grpc"})
        for name, body in blocks.items():
            with self.subTest(upstream=name):
                # A hash over several replicas here would split a tenant's HTTP and gRPC calls.
                self.assertNotRegex(body, r"\bhash\b")
                servers = re.findall(r"server\s+(\S+)", body)
                self.assertEqual(len(servers), 1, servers)
                self.assertTrue(servers[0].startswith("127.0.0.1:"), servers)

    def test_comment_says_why_and_points_at_haproxy(self):
        with open(CONF) as f:
            header = f.read().split("\n\n", 1)[0]
        self.assertIn("ONE anyai-server replica", header)
        self.assertIn("deploy/haproxy/anyai.cfg", header)
        self.assertIn("address:port", header)

    def test_tenant_is_the_bearer_token_else_the_client_ip(self):
        maps = dict(re.findall(r"(?ms)^map\s+\S+\s+(\$\S+)\s*\{(.*?)^\}", self.text))
        tenant = maps["$anyai_tenant"]
        self.assertRegex(self.text, r"map\s+\$http_authorization\s+\$anyai_tenant")
        # The token, however "Bearer" is spelled or spaced: one key is one tenant.
        token_var = re.search(r"default\s+(\$\S+);", tenant).group(1)
        self.assertRegex(maps[token_var], r"~\*\^bearer")
        fallback = re.search(r'""\s+(\$\S+);', tenant).group(1)
        self.assertRegex(maps[fallback], r'""\s+\$remote_addr;')

    def test_access_log_leaves_query_strings_out(self):
        # /check?key= carries API keys, which are never logged (SPEC §3).
        self.assertNotIn("$request ", self.text.replace("$request_method", ""))
        logs = re.findall(r"access_log\s+\S+\s+(\S+);", self.text)
        self.assertEqual(len(logs), 2, logs)
        self.assertTrue(all(name == "anyai_no_query" for name in logs), logs)

    def test_http_is_proxied_and_grpc_is_grpc_passed(self):
        self.assertIn("proxy_pass http://anyai_http;", self.text)
        self.assertIn("grpc_pass grpc://anyai_grpc;", self.text)
        self.assertRegex(self.text, r"listen\s+\S*50051\s+http2;")
        # No retry elsewhere (there is no elsewhere; and with a hash a retry would move a tenant).
        self.assertIn("proxy_next_upstream off;", self.text)
        self.assertIn("grpc_next_upstream off;", self.text)


if __name__ == "__main__":
    deploy_testing.run_tests(flags=("nginx",))
