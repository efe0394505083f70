"""TLS end to end (issue 12): anyai-server with a certificate from a CA this test makes with the
`openssl` CLI, on the public gRPC port (--tls_cert_file, --tls_key_file) and, with mutual TLS,
on the Admin listener (admin_tls with client_ca_file in a config file); real clients: Python
grpcio with ssl_channel_credentials, the anyai-admin CLI with its --tls_* flags, and curl
--cacert on the HTTP port (the same --tls_* flags serve HTTPS there).

  /usr/bin/python3 tests/e2e/tls_test.py --server build/bin/anyai-server \\
      --admin build/bin/anyai-admin --pythonpath build/python
"""

import os
import shutil
import subprocess
import tempfile
import textwrap
import unittest

import anyai_server_process

OPTIONS, UNITTEST_ARGV = anyai_server_process.parse_args(__doc__, ("server", "admin"))

import grpc  # noqa: E402

from anyai.v1 import admin_pb2, anyai_pb2  # noqa: E402

ADMIN_TOKEN = "e2e-tls-admin-token"
CALL_TIMEOUT_S = 20.0
# A refused handshake fails at once; the bound only keeps a broken test from hanging.
REFUSED_TIMEOUT_S = 5.0
OPENSSL_TIMEOUT_S = 60.0


def openssl(*args):
    subprocess.run(("openssl",) + args, check=True, capture_output=True,
                   timeout=OPENSSL_TIMEOUT_S)


def make_pki(directory):
    """A CA, a server certificate for localhost and 127.0.0.1, a client certificate (both
    signed by the CA), and a second CA that signed nothing here. Returns {name: path}."""
    paths = {name: os.path.join(directory, name) for name in (
        "ca.key", "ca.pem", "server.key", "server.csr", "server.pem", "client.key",
        "client.csr", "client.pem", "other-ca.key", "other-ca.pem", "server.ext", "client.ext")}
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", f"/CN=anyai e2e {ca}", "-keyout", paths[f"{ca}.key"],
                "-out", paths[f"{ca}.pem"])
    with open(paths["server.ext"], "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    with open(paths["client.ext"], "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=anyai e2e {who}",
                "-keyout", paths[f"{who}.key"], "-out", paths[f"{who}.csr"])
        openssl("x509", "-req", "-in", paths[f"{who}.csr"], "-CA", paths["ca.pem"],
                "-CAkey", paths["ca.key"], "-CAcreateserial", "-days", "2",
                "-extfile", paths[f"{who}.ext"], "-out", paths[f"{who}.pem"])
    return paths


def read(path):
    with open(path, "rb") as f:
        return f.read()


def bearer(token):
    return (("authorization", "Bearer " + token),)


class TlsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="anyai-e2e-tls-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, ignore_errors=True)
        cls.pki = make_pki(cls.dir)
        config = os.path.join(cls.dir, "server.textproto")
        with open(config, "w") as f:
            f.write(textwrap.dedent(f"""\
                admin_tls {{
                  cert_file: "{cls.pki['server.pem']}"
                  key_file: "{cls.pki['server.key']}"
                  client_ca_file: "{cls.pki['ca.pem']}"
                }}
                """))
        cls.server = anyai_server_process.ServerProcess(
            OPTIONS.server, admin_token=ADMIN_TOKEN,
            extra_args=["--config=" + config, "--tls_cert_file=" + cls.pki["server.pem"],
                        "--tls_key_file=" + cls.pki["server.key"]])
        cls.server.start()
        cls.addClassCleanup(cls.server.stop)

    def channel(self, address, root="ca.pem", client=False):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(self.pki[root]),
            private_key=read(self.pki["client.key"]) if client else None,
            certificate_chain=read(self.pki["client.pem"]) if client else None)
        channel = grpc.secure_channel(address, credentials)
        self.addCleanup(channel.close)
        return channel

    def insecure_channel(self, address):
        channel = grpc.insecure_channel(address)
        self.addCleanup(channel.close)
        return channel

    @staticmethod
    def list_models(channel, timeout=CALL_TIMEOUT_S):
        return channel.unary_unary(
            "/anyai.v1.AnyAI/ListModels",
            request_serializer=anyai_pb2.ListModelsRequest.SerializeToString,
            response_deserializer=anyai_pb2.ListModelsResponse.FromString)(
                anyai_pb2.ListModelsRequest(), timeout=timeout)

    @staticmethod
    def create_key(channel, timeout=CALL_TIMEOUT_S):
        return channel.unary_unary(
            "/anyai.v1.Admin/CreateKey",
            request_serializer=admin_pb2.CreateKeyRequest.SerializeToString,
            response_deserializer=admin_pb2.CreateKeyResponse.FromString)(
                admin_pb2.CreateKeyRequest(plan="free", label="tls"),
                metadata=bearer(ADMIN_TOKEN), timeout=timeout)

    def assert_refused(self, call, *args):
        with self.assertRaises(grpc.RpcError) as raised:
            call(*args, timeout=REFUSED_TIMEOUT_S)
        self.assertIn(raised.exception.code(),
                      (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED),
                      raised.exception)

    def test_public_port_serves_a_client_that_trusts_the_ca(self):
        models = self.list_models(self.channel(f"localhost:{self.server.port}"))
        self.assertGreater(len(models.data), 0)
        # The certificate names 127.0.0.1 too.
        self.assertGreater(len(self.list_models(self.channel(self.server.grpc_address)).data), 0)

    def test_public_port_refuses_plaintext_and_a_client_that_trusts_another_ca(self):
        self.assert_refused(self.list_models, self.insecure_channel(self.server.grpc_address))
        self.assert_refused(self.list_models,
                            self.channel(self.server.grpc_address, root="other-ca.pem"))

    def test_admin_port_requires_a_client_certificate(self):
        address = self.server.admin_address
        self.assert_refused(self.create_key, self.channel(address))
        self.assert_refused(self.create_key, self.insecure_channel(address))
        response = self.create_key(self.channel(address, client=True))
        self.assertTrue(response.key.startswith("sk-"), response)

    def curl(self, *args):
        return subprocess.run(
            ["curl", "--silent", "--show-error", "--max-time", str(int(CALL_TIMEOUT_S)),
             "--noproxy", "*", "--output", "/dev/null", "--write-out", "%{http_code}", *args],
            capture_output=True, text=True, timeout=CALL_TIMEOUT_S + 10)

    def test_http_port_serves_https_to_curl_with_the_ca(self):
        url = f"https://localhost:{self.server.http_port}/v1/models"
        ok = self.curl("--cacert", self.pki["ca.pem"], url)
        self.assertEqual((ok.returncode, ok.stdout), (0, "200"), ok.stderr)
        untrusted = self.curl("--cacert", self.pki["other-ca.pem"], url)
        self.assertNotEqual(untrusted.returncode, 0, "a certificate from another CA was trusted")
        plaintext = self.curl(f"http://127.0.0.1:{self.server.http_port}/v1/models")
        self.assertNotEqual(plaintext.stdout, "200", "plaintext HTTP was served on the TLS port")

    def admin_cli(self, *flags):
        env = {k: v for k, v in os.environ.items() if k != "ANYAI_SERVER"}
        env["ANYAI_ADMIN_TOKEN"] = ADMIN_TOKEN
        return subprocess.run(
            [OPTIONS.admin, "--server=" + self.server.admin_address, *flags, "keys", "list"],
            env=env, capture_output=True, text=True, timeout=CALL_TIMEOUT_S + 10)

    def test_admin_cli_with_the_ca_and_a_client_certificate(self):
        ok = self.admin_cli("--tls_ca_file=" + self.pki["ca.pem"],
                            "--tls_cert_file=" + self.pki["client.pem"],
                            "--tls_key_file=" + self.pki["client.key"])
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn("KEY_ID", ok.stdout)
        no_client_cert = self.admin_cli("--tls_ca_file=" + self.pki["ca.pem"])
        self.assertEqual(no_client_cert.returncode, 1, no_client_cert.stderr)
        self.assertIn("UNAVAILABLE", no_client_cert.stderr)
        self.assertEqual(no_client_cert.stdout, "")
        plaintext = self.admin_cli()
        self.assertEqual(plaintext.returncode, 1, plaintext.stderr)
        missing = self.admin_cli("--tls_ca_file=" + os.path.join(self.dir, "missing.pem"))
        self.assertEqual(missing.returncode, 2, missing.stderr)
        self.assertIn("--tls_ca_file", missing.stderr)


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV)
