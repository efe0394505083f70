"""deploy_live_metrics: a real anyai-server serves its metrics on GET /metrics of its HTTP port,
and `promtool check metrics` passes on that live scrape.

Needs the HTTP front wired into anyai-server: until it prints "http listening on HOST:PORT"
and answers GET /metrics, every case here fails with a message that says so.

Usage: live_metrics_test.py --server=build/bin/anyai-server --promtool=/usr/bin/promtool
"""

import json
import re
import subprocess
import time
import unittest

import deploy_testing
from deploy_testing import (ServerProcess, families_from_exposition, families_from_source,
                            http_get, http_post_json, require_metrics)

# Every label the gateway may put on a series (SPEC §7: never one per key or IP).
ALLOWED_LABELS = {"endpoint", "transport", "code", "feature_class", "plan", "outcome", "limit",
                  "window", "provider", "store", "version", "compiler"}


def sample_value(text, name, **labels):
    """The value of the one sample `name{labels...}` (labels given must match; others free)."""
    values = []
    for line in text.splitlines():
        m = re.match(r"^%s\{(.*)\}\s+(\S+)$" % re.escape(name), line)
        if not m:
            continue
        have = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            values.append(float(m.group(2)))
    if len(values) != 1:
        raise AssertionError("%d samples of %s%s" % (len(values), name, labels))
    return values[0]


class LiveMetricsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess(deploy_testing.ARGS["server"])
        # HttpFrontMissing names the missing piece: the HTTP front, or its /metrics route.
        cls.server.start()
        try:
            require_metrics(cls.server)
        except BaseException:
            cls.server.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def scrape(self):
        status, headers, body = http_get(self.server.http_url + "/metrics")
        self.assertEqual(status, 200, body[:500])
        return headers, body.decode()

    def test_metrics_is_prometheus_text_format(self):
        headers, _ = self.scrape()
        content_type = headers.get("Content-Type", "")
        self.assertTrue(content_type.startswith("text/plain"), content_type)
        self.assertIn("version=0.0.4", content_type)

    def test_promtool_check_metrics_passes_on_a_live_scrape(self):
        _, text = self.scrape()
        result = subprocess.run([deploy_testing.ARGS["promtool"], "check", "metrics"],
                                input=text, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, timeout=60)
        print(result.stdout)
        self.assertEqual(result.returncode, 0, result.stdout)

    def test_scrape_has_every_declared_family_with_its_type(self):
        _, text = self.scrape()
        scraped = {n: f.type for n, f in families_from_exposition(text).items()}
        declared = {n: f.type for n, f in families_from_source().items()}
        self.assertEqual(scraped, declared)

    def test_http_requests_are_counted_by_endpoint_transport_and_code(self):
        labels = dict(endpoint="models", transport="http", code="200")
        _, before = self.scrape()
        status, _, body = http_get(self.server.http_url + "/v1/models")
        self.assertEqual(status, 200, body[:300])
        # A request is counted once its answer is written, which may be just after the client
        # has read it: the scrape may come first (seen on a loaded CI machine).
        expected = sample_value(before, "anyai_requests_total", **labels) + 1
        deadline = time.monotonic() + 5
        while True:
            _, after = self.scrape()
            counted = sample_value(after, "anyai_requests_total", **labels)
            if counted >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(counted, expected)

    def test_no_label_names_a_key_or_an_ip(self):
        # An anonymous client (tenant = its IP) and a made-up key (401): neither may show up.
        http_post_json(self.server.http_url + "/v1/chat/completions",
                       json.dumps({"model": "llama-3-70b-chat",
                                   "messages": [{"role": "user", "content": "hi"}]}))
        http_post_json(self.server.http_url + "/v1/chat/completions", "{}",
                                   headers={"Authorization": "Bearer sk-anyai-not-a-real-key"})
        _, text = self.scrape()
        families = families_from_exposition(text)
        for family in families.values():
            with self.subTest(family=family.name):
                self.assertLessEqual(set(family.labels), ALLOWED_LABELS)
        self.assertNotIn("127.0.0.1", text)
        self.assertNotIn("sk-anyai", text)

    def test_healthz_and_readyz_answer_200(self):
        for path in ("/healthz", "/readyz"):
            with self.subTest(path=path):
                status, _, body = http_get(self.server.http_url + path)
                self.assertEqual(status, 200, body[:300])


if __name__ == "__main__":
    deploy_testing.run_tests(flags=("server", "promtool"))
