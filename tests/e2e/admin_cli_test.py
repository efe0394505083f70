"""`anyai-admin` end to end: the CLI against a real anyai-server process, through a key's whole
life (create, list, update, usage, revoke), `keys list` page by page, then its errors (on
stderr only, nothing on stdout). What the CLI changes is checked from the outside with Python
gRPC calls, as a client would see it. Also: `--help` of anyai-admin and anyai-server lists the
program's own flags.

ctest runs it (tests/e2e/CMakeLists.txt, e2e_admin_cli):
  /usr/bin/python3 tests/e2e/admin_cli_test.py --server build/bin/anyai-server \
      --admin build/bin/anyai-admin --pythonpath build/python
"""

import os
import re
import shlex
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anyai_server_process  # noqa: E402

OPTIONS, UNITTEST_ARGV = anyai_server_process.parse_args(__doc__, ("server", "admin"))

import grpc  # noqa: E402
from anyai.v1 import anyai_pb2  # noqa: E402

ADMIN_TOKEN = "e2e-admin-cli-token"
CLI_TIMEOUT_S = 60  # the CLI's own RPC deadline is 10 s; ASan start-up adds to it
CALL_TIMEOUT_S = 30
KEY_RE = re.compile(r"sk-anyai-[0-9a-f]{32,}")  # at least 128 bits, so never a masked key
USAGE_HEADER = r"(?m)^CLASS\s+UNIT\s+WINDOW\s+USED\s+RESERVED\s+LIMIT\s+REMAINING\s+RESET IN$"
# Token, spend and concurrency limits on top of the seed's (SPEC §2).
TOKEN_LIMITS_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "deploy", "config", "token-limits.textproto")


def usage_rows(usage):
    """The rows of an `anyai-admin usage` table, each split into its cells."""
    lines = usage.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("CLASS "))
    return [line.split() for line in lines[start + 1:] if line.strip()]


def usd(micro_usd):
    """micro-USD as the table prints it: "$0.00", "$1.50", "$0.0125"."""
    fraction = f"{micro_usd % 1_000_000:06d}".rstrip("0").ljust(2, "0")
    return f"${micro_usd // 1_000_000}.{fraction}"


class AdminCliTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = anyai_server_process.ServerProcess(OPTIONS.server, admin_token=ADMIN_TOKEN)
        cls.server.start()
        cls.addClassCleanup(cls.server.stop)
        cls.channel = grpc.insecure_channel(cls.server.grpc_address)
        cls.addClassCleanup(cls.channel.close)
        cls.create_chat = cls.channel.unary_unary(
            "/anyai.v1.AnyAI/CreateChatCompletion",
            request_serializer=anyai_pb2.ChatCompletionRequest.SerializeToString,
            response_deserializer=anyai_pb2.ChatCompletion.FromString)
        cls.check_key = cls.channel.unary_unary(
            "/anyai.v1.AnyAI/CheckKey",
            request_serializer=anyai_pb2.CheckKeyRequest.SerializeToString,
            response_deserializer=anyai_pb2.CheckKeyResponse.FromString)

    def admin(self, *args, token=ADMIN_TOKEN, server=None):
        """Runs anyai-admin; returns the CompletedProcess (stdout, stderr as text)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("ANYAI_ADMIN_TOKEN", "ANYAI_SERVER")}
        if token is not None:
            env["ANYAI_ADMIN_TOKEN"] = token
        command = [OPTIONS.admin, "--server=" + (server or self.server.admin_address)]
        return subprocess.run(command + list(args), env=env, capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S)

    def admin_ok(self, *args):
        result = self.admin(*args)
        self.assertEqual(result.returncode, 0,
                         f"anyai-admin {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def chat(self, key):
        request = anyai_pb2.ChatCompletionRequest(
            model="llama-3-8b-chat", messages=[anyai_pb2.ChatMessage(role="user", content="hi")])
        return self.create_chat(request, metadata=(("authorization", "Bearer " + key),),
                                timeout=CALL_TIMEOUT_S)

    @staticmethod
    def field(output, name):
        match = re.search(rf"^{name}:\s*(.*)$", output, re.MULTILINE)
        return match.group(1).strip() if match else None

    def test_a_key_from_creation_to_revocation(self):
        # keys create: the key in clear, once.
        created = self.admin_ok("keys", "create", "--plan=premium", "--label=x")
        keys = KEY_RE.findall(created)
        self.assertEqual(len(keys), 1, f"the clear key should appear exactly once:\n{created}")
        key = keys[0]
        key_id = self.field(created, "key_id")
        self.assertRegex(key_id or "", r"^[0-9a-f]{16}$", created)
        self.assertEqual(self.field(created, "plan"), "premium")
        self.assertEqual(self.field(created, "label"), "x")
        self.assertEqual(self.chat(key).object, "chat.completion")

        # keys list: the key masked, never in clear.
        listed = self.admin_ok("keys", "list")
        self.assertNotIn(key, listed)
        rows = [line for line in listed.splitlines() if line.startswith(key_id)]
        self.assertEqual(len(rows), 1, listed)
        row = rows[0].split()
        self.assertEqual(row[1], "premium", rows[0])
        masked = row[2]
        self.assertIn("\u2026", masked)
        self.assertTrue(key.startswith(masked.split("\u2026")[0]), masked)
        self.assertTrue(key.endswith(masked.split("\u2026")[1]), masked)
        self.assertLess(len(masked), len(key) // 2)
        self.assertIn(" no ", rows[0], "not revoked")

        # keys update: the plan changes for the key's next request.
        updated = self.admin_ok("keys", "update", key_id, "--plan=free")
        self.assertEqual(self.field(updated, "plan"), "free")
        self.assertEqual(self.field(updated, "label"), "x", "the label is kept")
        check = self.check_key(anyai_pb2.CheckKeyRequest(key=key), timeout=CALL_TIMEOUT_S)
        self.assertEqual(check.plan, "free")

        # usage: a table with a row per window, llm among them, counting the chat above. The
        # seed's plans limit only requests: no token, spend or in-flight rows.
        usage = self.admin_ok("usage", key)
        self.assertEqual(self.field(usage, "plan"), "free")
        self.assertRegex(usage, USAGE_HEADER)
        llm_rows = [line.split() for line in usage.splitlines() if line.startswith("llm ")]
        self.assertEqual(len(llm_rows), 2, usage)
        minute, day = llm_rows
        self.assertEqual(minute[1:7], ["requests", "1m", "1", "0", "10", "9"], usage)
        self.assertEqual(day[1:7], ["requests", "24h", "1", "0", "2000", "1999"], usage)
        units = {row[1] for row in usage_rows(usage)}
        self.assertEqual(units, {"requests"}, usage)
        self.assertNotIn(key, usage)
        by_id = [line.split()[:7] for line in self.admin_ok("usage", key_id).splitlines()
                 if line.startswith("llm ")]
        self.assertEqual(by_id, [minute[:7], day[:7]], "usage by key_id")

        # keys revoke: the key stops working at once.
        revoked = self.admin_ok("keys", "revoke", key_id)
        self.assertIsNotNone(self.field(revoked, "revoked"), revoked)
        with self.assertRaises(grpc.RpcError) as caught:
            self.chat(key)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAUTHENTICATED,
                         caught.exception.details())
        self.assertNotIn(key_id, self.admin_ok("keys", "list"), "revoked keys are hidden")
        self.assertIn(key_id, self.admin_ok("keys", "list", "--show_revoked"))

    def key_ids(self, listed):
        """The key_ids of a `keys list` table, in order, after checking its header."""
        lines = listed.splitlines()
        self.assertRegex(lines[0] if lines else "", r"^KEY_ID\s+PLAN\s+KEY\s", listed)
        return [line.split()[0] for line in lines[1:]]

    def test_keys_list_pages_and_prints_the_command_for_the_next_page(self):
        for i in range(5):
            self.admin_ok("keys", "create", "--plan=free", f"--label=page {i}")
        everything = self.key_ids(self.admin_ok("keys", "list"))
        self.assertGreaterEqual(len(everything), 5)

        # Follow the printed command from page to page, as a script would.
        paged, pages = [], 0
        args = ["keys", "list", "--page_size=2"]
        while args is not None:
            pages += 1
            self.assertLess(pages, 100, "the pages never end")
            result = self.admin(*args)
            self.assertEqual(result.returncode, 0, f"{result.stdout}{result.stderr}")
            self.assertNotIn("next page", result.stdout, "stdout is the table alone")
            ids = self.key_ids(result.stdout)
            self.assertLessEqual(len(ids), 2, result.stdout)
            paged += ids
            if not result.stderr:
                args = None
                continue
            match = re.fullmatch(r"next page: anyai-admin (.*)\n", result.stderr)
            self.assertIsNotNone(match, f"the last line of stderr, and the only one:\n"
                                        f"{result.stderr}")
            words = shlex.split(match.group(1))
            self.assertEqual(words[0], "--server=" + self.server.admin_address)
            self.assertIn("--page_size=2", words)
            args = words[1:]  # self.admin passes --server itself
        self.assertGreaterEqual(pages, 3)
        self.assertEqual(paged, everything, "every key once, in order, over the pages")

        # A page token alone lists everything from there on.
        result = self.admin("keys", "list", "--page_size=2")
        first = self.key_ids(result.stdout)
        token = re.search(r"--page_token=(\S+)", result.stderr).group(1)
        rest = self.key_ids(self.admin_ok("keys", "list", "--page_token=" + token))
        self.assertEqual(first + rest, everything)

    def test_errors_exit_non_zero_with_a_readable_message(self):
        key_id = self.field(self.admin_ok("keys", "create", "--plan=free"), "key_id")
        cases = [
            ("no admin token", dict(token=None), ("keys", "list"), 2,
             "ANYAI_ADMIN_TOKEN is not set"),
            ("wrong admin token", dict(token="wrong"), ("keys", "list"), 1, "UNAUTHENTICATED"),
            ("unknown key id", {}, ("keys", "get", "0123456789abcdef"), 1, "NOT_FOUND"),
            ("revoke an unknown key id", {}, ("keys", "revoke", "fedcba9876543210"), 1,
             "NOT_FOUND"),
            ("update to an unknown plan", {}, ("keys", "update", key_id, "--plan=gold"), 1,
             "INVALID_ARGUMENT"),
            ("create without a plan", {}, ("keys", "create"), 2, "--plan"),
            ("unknown command", {}, ("frobnicate",), 2, "unknown command"),
            ("no server there", dict(server="127.0.0.1:1"), ("keys", "list"), 1, "UNAVAILABLE"),
        ]
        for name, kwargs, args, code, message in cases:
            with self.subTest(name):
                result = self.admin(*args, **kwargs)
                self.assertEqual(result.returncode, code, f"{result.stdout}{result.stderr}")
                self.assertEqual(result.stdout, "", "a failed command prints nothing on stdout")
                self.assertTrue(result.stderr.startswith("anyai-admin: "), result.stderr)
                self.assertIn(message, result.stderr)
                self.assertNotIn(ADMIN_TOKEN, result.stdout + result.stderr)


class HelpTest(unittest.TestCase):
    """--help lists the program's own flags (Abseil's default shows only those of a file named
    after the program, which neither main file is); --helpfull lists them with Abseil's."""

    def help(self, binary, flag):
        result = subprocess.run([binary, flag], capture_output=True, text=True,
                                timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
        return result.stdout + result.stderr

    def check_lists(self, binary, flags, usage):
        for help_flag in ("--help", "--helpshort", "--helpfull"):
            with self.subTest(binary=os.path.basename(binary), help=help_flag):
                text = self.help(binary, help_flag)
                self.assertNotIn("No flags matched", text)
                self.assertTrue(text.startswith(usage), text)
                for flag in flags:
                    self.assertRegex(text, rf"(?m)^\s+--{flag} \(", f"--{flag} missing:\n{text}")
                if help_flag == "--helpfull":
                    self.assertIn("--flagfile", text)
                else:
                    self.assertNotIn("--flagfile", text, "only the program's own flags")

    def test_anyai_server_help_lists_its_flags(self):
        self.check_lists(OPTIONS.server,
                         ("config", "grpc_listen", "http_listen", "data_dir", "print_config"),
                         "anyai-server: The AnyAI gateway")

    def test_anyai_admin_help_lists_its_flags(self):
        self.check_lists(OPTIONS.admin,
                         ("server", "plan", "label", "page_size", "page_token", "show_revoked"),
                         "anyai-admin: manage API keys")


class AdminCliTokenLimitsTest(unittest.TestCase):
    """`anyai-admin usage` against a server with deploy/config/token-limits.textproto: rows for
    token and spend windows with their units, and the calls in flight."""

    @classmethod
    def setUpClass(cls):
        cls.server = anyai_server_process.ServerProcess(
            OPTIONS.server, admin_token=ADMIN_TOKEN, extra_args=["--config=" + TOKEN_LIMITS_CONFIG])
        cls.server.start()
        cls.addClassCleanup(cls.server.stop)
        cls.channel = grpc.insecure_channel(cls.server.grpc_address)
        cls.addClassCleanup(cls.channel.close)
        cls.create_chat = cls.channel.unary_unary(
            "/anyai.v1.AnyAI/CreateChatCompletion",
            request_serializer=anyai_pb2.ChatCompletionRequest.SerializeToString,
            response_deserializer=anyai_pb2.ChatCompletion.FromString)
        cls.check_key = cls.channel.unary_unary(
            "/anyai.v1.AnyAI/CheckKey",
            request_serializer=anyai_pb2.CheckKeyRequest.SerializeToString,
            response_deserializer=anyai_pb2.CheckKeyResponse.FromString)

    admin = AdminCliTest.admin
    admin_ok = AdminCliTest.admin_ok

    def chat(self, key, model):
        request = anyai_pb2.ChatCompletionRequest(
            model=model, max_tokens=50,
            messages=[anyai_pb2.ChatMessage(role="user", content="hi")])
        return self.create_chat(request, metadata=(("authorization", "Bearer " + key),),
                                timeout=CALL_TIMEOUT_S)

    def test_usage_shows_token_and_spend_windows_and_calls_in_flight(self):
        created = self.admin_ok("keys", "create", "--plan=free")
        key = KEY_RE.findall(created)[0]
        llm_tokens = self.chat(key, "llama-3-8b-chat").usage.total_tokens
        closed_tokens = self.chat(key, "claude-3-opus-20240229").usage.total_tokens
        self.assertGreater(llm_tokens, 0)
        check = self.check_key(anyai_pb2.CheckKeyRequest(key=key), timeout=CALL_TIMEOUT_S)
        closed = next(c for c in check.classes if c.feature_class == "closed_llm")
        spent = closed.spend_windows[0].used  # micro-USD at the model's prices
        self.assertGreater(spent, 0)

        usage = self.admin_ok("usage", key)
        self.assertRegex(usage, USAGE_HEADER)
        rows = usage_rows(usage)
        llm = [row[1:7] for row in rows if row[0] == "llm"]
        self.assertEqual(llm, [
            ["requests", "1m", "1", "0", "10", "9"],
            ["requests", "24h", "1", "0", "2000", "1999"],
            ["tokens", "1m", str(llm_tokens), "0", "20000", str(20000 - llm_tokens)],
            ["tokens", "24h", str(llm_tokens), "0", "1000000", str(1000000 - llm_tokens)],
            ["calls", "in-flight", "0", "-", "2", "2"],
        ], usage)
        closed_rows = [row[1:7] for row in rows if row[0] == "closed_llm"]
        self.assertEqual(closed_rows, [
            ["requests", "1h", "1", "0", "25", "24"],
            ["requests", "24h", "1", "0", "100", "99"],
            ["tokens", "1h", str(closed_tokens), "0", "50000", str(50000 - closed_tokens)],
            ["tokens", "24h", str(closed_tokens), "0", "200000", str(200000 - closed_tokens)],
            ["usd", "24h", usd(spent), "$0.00", "$1.00", usd(1_000_000 - spent)],
            ["usd", "720h", usd(spent), "$0.00", "$10.00", usd(10_000_000 - spent)],
            ["calls", "in-flight", "0", "-", "2", "2"],
        ], usage)
        # Every class of this config limits calls in flight: each has its in-flight row.
        classes = {row[0] for row in rows}
        in_flight = {row[0] for row in rows if row[1] == "calls"}
        self.assertEqual(in_flight, classes, usage)

    def test_usd_formats_like_the_cli(self):
        self.assertEqual([usd(0), usd(1), usd(12_500), usd(1_500_000), usd(12_000_001)],
                         ["$0.00", "$0.000001", "$0.0125", "$1.50", "$12.000001"])


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV, verbosity=2)
