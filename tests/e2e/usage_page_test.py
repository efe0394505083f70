"""The usage page of GET /check end to end, as a person sees it: a real anyai-server process,
some chat completions over HTTP, the JSON /check reports, then the same URL opened by headless
Chromium (Debian's `chromium`), which sends a browser's Accept header and so gets the HTML page.
Chromium takes a screenshot (a real PNG of the window's size, not blank) and dumps the DOM,
whose text must show the figures the JSON reported: the plan, the masked key (and never the
key), and per class and window used / limit and remaining.

ctest runs it (tests/e2e/CMakeLists.txt, e2e_usage_page):
  /usr/bin/python3 tests/e2e/usage_page_test.py --server build/bin/anyai-server \
      --admin build/bin/anyai-admin --pythonpath build/python
With ANYAI_E2E_SCREENSHOT_DIR set, the screenshots are kept there to look at.
"""

import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anyai_server_process  # noqa: E402

OPTIONS, UNITTEST_ARGV = anyai_server_process.parse_args(__doc__, ("server", "admin"))

ADMIN_TOKEN = "e2e-usage-page-token"
CALL_TIMEOUT_S = 30
CHROMIUM_TIMEOUT_S = 120  # a cold start on two busy cores, or under the ASan build's load
WINDOW = (1000, 800)
KEY_RE = re.compile(r"sk-anyai-[0-9a-f]{32,}")
# No proxy may see the loopback calls.
URLOPEN = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


class PageText(html.parser.HTMLParser):
    """The text of a usage page: the <dt>/<dd> pairs, and per <h2> class its table rows, each
    the list of its cells' text."""

    def __init__(self):
        super().__init__()
        self.fields = {}
        self.classes = {}  # feature class -> [[cell text, ...] per <tbody> row]
        self.title = ""
        self._tag = None
        self._text = ""
        self._dt = None
        self._class = None
        self._row = None
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        if tag in ("title", "dt", "dd", "h2", "td"):
            self._tag, self._text = tag, ""
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "br" and self._tag == "td":
            self._text += " "

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "tr" and self._row is not None:
            self.classes[self._class].append(self._row)
            self._row = None
        elif tag == self._tag:
            text = " ".join(self._text.split())
            if tag == "title":
                self.title = text
            elif tag == "dt":
                self._dt = text
            elif tag == "dd":
                self.fields[self._dt] = text
            elif tag == "h2":
                self._class = text
                self.classes[text] = []
            elif tag == "td" and self._row is not None:
                self._row.append(text)
            self._tag = None

    def handle_data(self, data):
        if self._tag is not None:
            self._text += data


def png_size_and_colours(path):
    """(width, height, distinct byte values of the decompressed image data) of a PNG."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


class UsagePageTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.chromium = shutil.which("chromium")
        if cls.chromium is None:
            raise RuntimeError("chromium not found: run scripts/install-deps.sh --tests")
        cls.server = anyai_server_process.ServerProcess(OPTIONS.server, admin_token=ADMIN_TOKEN)
        cls.server.start()
        cls.addClassCleanup(cls.server.stop)
        cls.base = f"http://127.0.0.1:{cls.server.http_port}"
        cls.dir = tempfile.mkdtemp(prefix="anyai-usage-page-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, ignore_errors=True)

    def create_key(self, plan):
        env = dict(os.environ, ANYAI_ADMIN_TOKEN=ADMIN_TOKEN)
        result = subprocess.run(
            [OPTIONS.admin, "--server=" + self.server.admin_address, "keys", "create",
             "--plan=" + plan, "--label=usage page"],
            env=env, capture_output=True, text=True, timeout=CALL_TIMEOUT_S * 2)
        self.assertEqual(result.returncode, 0, result.stderr)
        return KEY_RE.search(result.stdout).group(0)

    def chat(self, key=None):
        body = json.dumps({"model": "llama-3-8b-chat",
                           "messages": [{"role": "user", "content": "hello"}]}).encode()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = "Bearer " + key
        request = urllib.request.Request(self.base + "/v1/chat/completions", data=body,
                                         headers=headers)
        with URLOPEN(request, timeout=CALL_TIMEOUT_S) as response:
            self.assertEqual(response.status, 200)

    def check_json(self, query=""):
        request = urllib.request.Request(self.base + "/check" + query,
                                         headers={"Accept": "application/json"})
        with URLOPEN(request, timeout=CALL_TIMEOUT_S) as response:
            self.assertEqual(response.headers["Content-Type"], "application/json")
            return json.load(response)

    def browse(self, query, name):
        """Opens /check`query` in headless Chromium: (the parsed DOM text, the screenshot
        path), after checking the screenshot is a real, non-blank PNG of the window's size."""
        screenshot = os.path.join(self.dir, name + ".png")
        profile = tempfile.mkdtemp(prefix="profile-", dir=self.dir)
        result = subprocess.run(
            [self.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", "--no-proxy-server",
             "--user-data-dir=" + profile, "--screenshot=" + screenshot,
             "--window-size=%d,%d" % WINDOW, "--dump-dom", self.base + "/check" + query],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
        self.assertEqual(result.returncode, 0, result.stderr[-5000:])
        self.assertTrue(os.path.isfile(screenshot), result.stderr[-5000:])
        width, height, colours = png_size_and_colours(screenshot)
        self.assertEqual((width, height), WINDOW)
        self.assertGreater(os.path.getsize(screenshot), 10000, "a page of text, not a blank")
        self.assertGreater(colours, 32, "the screenshot is (nearly) one colour")
        keep = os.environ.get("ANYAI_E2E_SCREENSHOT_DIR")
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(screenshot, keep)
        page = PageText()
        page.feed(result.stdout)
        page.close()
        self.assertTrue(page.classes, "no class in the DOM:\n" + result.stdout[:3000])
        return page, result.stdout

    def assert_shows(self, page, report):
        """`page` shows every class and window of the JSON `report`, in its order."""
        self.assertEqual(page.fields.get("Plan"), report["plan"])
        self.assertIn(report["plan"], page.title)
        self.assertEqual(list(page.classes), [c["feature_class"] for c in report["classes"]])
        for c in report["classes"]:
            rows = page.classes[c["feature_class"]]
            self.assertEqual(len(rows), len(c["windows"]), c["feature_class"])
            for row, w in zip(rows, c["windows"]):
                with self.subTest(feature_class=c["feature_class"], window=w["window_seconds"]):
                    self.assertEqual(len(row), 5, row)
                    self.assertEqual(row[1], f"{w['used']} / {w['limit']}")
                    self.assertEqual(row[2], f"{w['remaining']} left")
                    self.assertRegex(row[3], r"^(resets in \d.* at (\d\d:\d\d:\d\d"
                                             r"|[A-Z][a-z]{2} \d\d \d\d:\d\d) UTC"
                                             r"|nothing counted)$")

    def test_a_keys_page_shows_what_check_reports_as_json(self):
        key = self.create_key("premium")
        self.chat(key)
        self.chat(key)
        report = self.check_json("?key=" + key)
        self.assertEqual(report["plan"], "premium")
        llm = next(c for c in report["classes"] if c["feature_class"] == "llm")
        self.assertEqual(llm["windows"][0]["used"], 2)

        # Chromium's own /check counts against its caller (the anonymous 127.0.0.1), not the
        # key asked about, so the key's figures are the ones the JSON had.
        page, dom = self.browse("?key=" + key, "premium")
        self.assert_shows(page, report)
        self.assertEqual(page.fields.get("Key"), report["masked_key"])
        self.assertNotIn(key, dom)
        self.assertIn("Created", page.fields)

    def test_without_a_key_the_page_shows_the_callers_anonymous_usage(self):
        self.chat()
        report = self.check_json()
        page, _ = self.browse("", "anonymous")
        self.assertEqual(page.fields.get("Key"), "anonymous (your IP's free-plan usage)")
        self.assertEqual(page.fields.get("Plan"), "free")
        # Every /check counts in `meta` for this very caller, so only the other classes are
        # still as the JSON had them.
        report["classes"] = [c for c in report["classes"] if c["feature_class"] != "meta"]
        page.classes.pop("meta", None)
        self.assert_shows(page, report)

    def test_a_bad_key_is_a_401_page_for_a_browser(self):
        # urllib sends no browser Accept: the JSON error, unchanged.
        with self.assertRaises(urllib.error.HTTPError) as caught:
            URLOPEN(self.base + "/check?key=sk-anyai-" + "0" * 64, timeout=CALL_TIMEOUT_S)
        self.assertEqual(caught.exception.code, 401)
        self.assertEqual(json.load(caught.exception)["error"]["code"], "invalid_api_key")
        with self.assertRaises(urllib.error.HTTPError) as caught:
            URLOPEN(urllib.request.Request(
                self.base + "/check?key=sk-anyai-" + "0" * 64,
                headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}),
                timeout=CALL_TIMEOUT_S)
        self.assertEqual(caught.exception.code, 401)
        self.assertEqual(caught.exception.headers["Content-Type"], "text/html; charset=utf-8")
        self.assertIn("unknown or revoked API key", caught.exception.read().decode())


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV)
