// server/http/http_server.cc over TLS: a CA, a server certificate for localhost and a client
// certificate are made by the `openssl` CLI in a temp dir, and the real `curl` CLI talks to an
// HttpServer with a test route. curl --cacert works and without it fails; with a client CA,
// a client without a certificate is refused and one with a certificate signed by the CA is
// served. Plaintext HTTP to the TLS port neither crashes nor hangs the server, a handshake
// that never finishes is cut at header_timeout, and unreadable or mismatched files fail
// Start() naming the config field.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/http/http_server.h"
#include "tests/server/http/http_test_client.h"
#include "tests/testing/temp_dir.h"

namespace anyai::server {
namespace {

using ::anyai::testing::HttpConnection;
using ::anyai::testing::Request;
using ::anyai::testing::TempDir;
using ::testing::HasSubstr;

// Runs `command` through the shell; its exit status and stdout.
std::pair<int, std::string> Shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, ""};
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) out.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class HttpTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string d = dir_->path();
    // A CA; a server certificate for localhost / 127.0.0.1 and a client certificate, both
    // signed by it.
    const std::string script = absl::StrCat(
        "set -e; cd ", d, "; exec 2>openssl.log\n",
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
        "-subj /CN=anyai-test-ca\n",
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
        "-subj /CN=localhost\n",
        "echo subjectAltName=DNS:localhost,IP:127.0.0.1 > server.ext\n",
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 2 -extfile server.ext\n",
        "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
        "-subj /CN=anyai-test-client\n",
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out client.pem -days 2\n",
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 "
        "-subj /CN=other\n");
    { std::ofstream(dir_->Sub("make.sh")) << script; }
    made_ = Shell("sh " + dir_->Sub("make.sh")).first == 0;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(made_) << "openssl could not make the test certificates";
    ASSERT_TRUE(router_
                    .Add("GET", "/healthz",
                         [](HttpExchange& e) {
                           e.Respond(HttpResponse{.status = 200, .headers = {}, .body = "ok\n"});
                         })
                    .ok());
  }

  static std::string File(const std::string& name) { return dir_->Sub(name); }

  absl::StatusOr<std::unique_ptr<HttpServer>> StartTls(bool client_ca,
                                                       HttpServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    options.tls_cert_file = File("server.pem");
    options.tls_key_file = File("server.key");
    if (client_ca) options.tls_client_ca_file = File("ca.pem");
    return HttpServer::Start(options, router_);
  }

  // curl's exit status and body for GET /healthz with `args`.
  std::pair<int, std::string> Curl(int port, const std::string& args) {
    return Shell(absl::StrCat("curl -sS --max-time 10 ", args, " https://localhost:", port,
                              "/healthz 2>/dev/null"));
  }

  static TempDir* dir_;
  static bool made_;
  HttpRouter router_;
};

TempDir* HttpTlsTest::dir_ = nullptr;
bool HttpTlsTest::made_ = false;

TEST_F(HttpTlsTest, CurlWithTheCaIsServedAndWithoutItIsNot) {
  absl::StatusOr<std::unique_ptr<HttpServer>> server = StartTls(false);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  EXPECT_EQ(Curl(port, "--cacert " + File("ca.pem")), std::make_pair(0, std::string("ok\n")));
  EXPECT_NE(Curl(port, "").first, 0);  // not a trusted certificate
  EXPECT_NE(Curl(port, "--cacert " + File("other.pem")).first, 0);
  // Keep-alive over TLS: two requests on one connection.
  auto [status, out] = Shell(absl::StrCat("curl -sS --max-time 10 --cacert ", File("ca.pem"),
                                          " https://localhost:", port,
                                          "/healthz https://localhost:", port, "/healthz"));
  EXPECT_EQ(status, 0);
  EXPECT_EQ(out, "ok\nok\n");
}

TEST_F(HttpTlsTest, MutualTlsWantsACertificateTheCaSigned) {
  absl::StatusOr<std::unique_ptr<HttpServer>> server = StartTls(true);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  const std::string ca = "--cacert " + File("ca.pem");
  EXPECT_NE(Curl(port, ca).first, 0);  // no client certificate
  EXPECT_NE(Curl(port, ca + " --cert " + File("other.pem") + " --key " + File("other.key")).first,
            0);  // one the CA did not sign
  EXPECT_EQ(Curl(port, ca + " --cert " + File("client.pem") + " --key " + File("client.key")),
            std::make_pair(0, std::string("ok\n")));
}

TEST_F(HttpTlsTest, PlaintextOrSilenceOnTheTlsPortIsClosed) {
  HttpServerOptions options;
  options.header_timeout = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<HttpServer>> server = StartTls(false, options);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  {
    HttpConnection plain(port);
    ASSERT_TRUE(plain.Send(Request("GET", "/healthz")));
    EXPECT_TRUE(plain.WaitForClose(absl::Seconds(10)));
  }
  {  // a client that never starts its handshake is cut at header_timeout
    HttpConnection silent(port);
    ASSERT_TRUE(silent.ok());
    EXPECT_TRUE(silent.WaitForClose(absl::Seconds(10)));
  }
  EXPECT_EQ(Curl(port, "--cacert " + File("ca.pem")).first, 0);  // still serving
}

TEST_F(HttpTlsTest, BadFilesFailStartNamingTheField) {
  HttpServerOptions options;
  options.listen = "127.0.0.1:0";
  options.tls_cert_file = File("missing.pem");
  options.tls_key_file = File("server.key");
  absl::StatusOr<std::unique_ptr<HttpServer>> s = HttpServer::Start(options, router_);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("tls.cert_file"));
  EXPECT_THAT(s.status().message(), HasSubstr("missing.pem"));

  options.tls_cert_file = File("server.pem");
  options.tls_key_file = File("openssl.log");  // not a key
  s = HttpServer::Start(options, router_);
  EXPECT_THAT(s.status().message(), HasSubstr("tls.key_file"));

  options.tls_key_file = File("other.key");  // a key, but not the certificate's
  s = HttpServer::Start(options, router_);
  EXPECT_THAT(s.status().message(), HasSubstr("tls.key_file"));
  EXPECT_THAT(s.status().message(), HasSubstr("other.key"));  // (OpenSSL: key values mismatch)

  options.tls_key_file = File("server.key");
  options.tls_client_ca_file = File("missing-ca.pem");
  s = HttpServer::Start(options, router_);
  EXPECT_THAT(s.status().message(), HasSubstr("tls.client_ca_file"));

  options.tls_client_ca_file = "";
  options.tls_key_file = "";
  s = HttpServer::Start(options, router_);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace anyai::server
