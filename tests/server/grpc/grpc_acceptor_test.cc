// Tests for server/grpc/grpc_acceptor.cc over real sockets and a real grpc::Server (a generic
// echo service, called through a generic stub): connections up to the caps are
// served, the next one from the same address is closed at accept, a closed channel gives its
// place back (also when gRPC closes it: a bad preface, the handshake timeout, a failed TLS
// handshake), trusted peers escape only the per-address cap, and Stop closes the listener.
// The TLS certificate is made by the `openssl` CLI in a temp dir.
#include "server/grpc/grpc_acceptor.h"

#include <arpa/inet.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::server {
namespace {

using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

constexpr absl::Duration kBound = absl::Seconds(15);

// True once `done` holds, false if it still does not after kBound.
bool WaitUntil(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + kBound;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// A channel of its own (its own subchannel, hence its own TCP connection) to 127.0.0.1.
std::shared_ptr<grpc::Channel> NewChannel(
    int port, const std::string& id,
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials()) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetString("anyai.test.channel_id", id);
  args.SetSslTargetNameOverride("localhost");
  return grpc::CreateCustomChannel(absl::StrCat("ipv4:127.0.0.1:", port), credentials, args);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Answers every call, whatever its method, with the messages it sent.
class EchoService final : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    return new Echo();
  }

 private:
  class Echo final : public grpc::ServerGenericBidiReactor {
   public:
    Echo() { StartRead(&message_); }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      StartWrite(&message_);
    }
    void OnWriteDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
        return;
      }
      StartRead(&message_);
    }
    void OnDone() override { delete this; }

   private:
    grpc::ByteBuffer message_;
  };
};

// One unary call of the echo service: OK when the server answered.
grpc::Status Call(grpc::Channel& channel) {
  grpc::GenericStub stub(channel.shared_from_this());
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kBound));
  grpc::Slice hello("hello");
  grpc::ByteBuffer request(&hello, 1);
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
      stub.PrepareUnaryCall(&context, "/anyai.test.Echo/Call", request, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok) || !ok) status = grpc::Status(grpc::StatusCode::UNKNOWN, "cq failed");
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

// A plain TCP connection to 127.0.0.1:port from `from` (another loopback address is another
// client); -1 if the connect fails (errno says why).
int ConnectRaw(int port, const char* from = nullptr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (from != nullptr) {
    sockaddr_in source{};
    source.sin_family = AF_INET;
    if (::inet_pton(AF_INET, from, &source.sin_addr) != 1 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof(source)) != 0) {
      const int error = errno;
      ::close(fd);
      errno = error;
      return -1;
    }
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    ::close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

// True when the server closes `fd` (a read returns end of file or a reset) within kBound;
// what it sends before (gRPC's GOAWAY to a bad preface) is read and dropped.
bool ClosedByServer(int fd) {
  const absl::Time deadline = absl::Now() + kBound;
  for (;;) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) return false;
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, static_cast<int>(left)) != 1) return false;
    char buffer[512];
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n < 0 && errno != EINTR && errno != EAGAIN) return false;
  }
}

GrpcAcceptorOptions Caps(int64_t total, int64_t per_address) {
  GrpcAcceptorOptions options;
  options.max_connections = total;
  options.max_connections_per_address = per_address;
  return options;
}

class GrpcAcceptorTest : public ::testing::Test {
 protected:
  // An acceptor with `options` on 127.0.0.1 and a started server behind it, with
  // `credentials` and what `configure` adds to its builder.
  void StartServer(
      GrpcAcceptorOptions options,
      std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials(),
      const std::function<void(grpc::ServerBuilder&)>& configure = nullptr) {
    absl::StatusOr<std::unique_ptr<GrpcAcceptor>> acceptor =
        GrpcAcceptor::Listen("127.0.0.1:0", std::move(options));
    ASSERT_OK(acceptor);
    acceptor_ = *std::move(acceptor);
    ASSERT_GT(acceptor_->port(), 0);
    grpc::ServerBuilder builder;
    builder.RegisterCallbackGenericService(&echo_);
    if (configure) configure(builder);
    acceptor_->Attach(builder.experimental().AddExternalConnectionAcceptor(
        grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD, credentials));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_OK(acceptor_->Start());
  }

  void TearDown() override {
    if (acceptor_ != nullptr) acceptor_->Stop();
    if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    for (int fd : raw_) ::close(fd);
  }

  int Raw(const char* from = nullptr) {
    const int fd = ConnectRaw(acceptor_->port(), from);
    if (fd >= 0) raw_.push_back(fd);
    return fd;
  }

  EchoService echo_;
  std::unique_ptr<GrpcAcceptor> acceptor_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<int> raw_;
};

TEST_F(GrpcAcceptorTest, ServesUpToThePerAddressCapAndClosesTheNextConnection) {
  StartServer(Caps(4, 2));
  std::shared_ptr<grpc::Channel> first = NewChannel(acceptor_->port(), "first");
  std::shared_ptr<grpc::Channel> second = NewChannel(acceptor_->port(), "second");
  ASSERT_TRUE(Call(*first).ok());
  ASSERT_TRUE(Call(*second).ok());
  EXPECT_EQ(acceptor_->open(), 2);

  const int third = Raw();
  ASSERT_GE(third, 0);
  EXPECT_TRUE(ClosedByServer(third));
  EXPECT_EQ(acceptor_->refused(), 1);
  EXPECT_EQ(acceptor_->open(), 2);
  // The two admitted are still served.
  EXPECT_TRUE(Call(*first).ok());
  EXPECT_TRUE(Call(*second).ok());
}

TEST_F(GrpcAcceptorTest, AnotherClientIsServedWhileOneAddressHoldsItsShare) {
  StartServer(Caps(8, 2));
  std::vector<int> attacker;
  for (int i = 0; i < 10; ++i) attacker.push_back(Raw());
  for (int fd : attacker) ASSERT_GE(fd, 0);
  ASSERT_TRUE(WaitUntil([&] { return acceptor_->refused() == 8; })) << acceptor_->refused();
  EXPECT_EQ(acceptor_->open(), 2);
  const int other = Raw("127.0.0.2");
  ASSERT_GE(other, 0) << std::strerror(errno);
  EXPECT_TRUE(WaitUntil([&] { return acceptor_->open() == 3; })) << acceptor_->open();
  EXPECT_EQ(acceptor_->refused(), 8);
}

TEST_F(GrpcAcceptorTest, AClosedChannelGivesItsPlaceBack) {
  StartServer(Caps(4, 2));
  std::shared_ptr<grpc::Channel> first = NewChannel(acceptor_->port(), "first");
  std::shared_ptr<grpc::Channel> second = NewChannel(acceptor_->port(), "second");
  ASSERT_TRUE(Call(*first).ok());
  ASSERT_TRUE(Call(*second).ok());
  ASSERT_EQ(acceptor_->open(), 2);

  first.reset();
  ASSERT_TRUE(WaitUntil([&] { return acceptor_->open() == 1; })) << acceptor_->open();
  std::shared_ptr<grpc::Channel> third = NewChannel(acceptor_->port(), "third");
  EXPECT_TRUE(Call(*third).ok());
  EXPECT_EQ(acceptor_->open(), 2);
  EXPECT_EQ(acceptor_->refused(), 0);
}

TEST_F(GrpcAcceptorTest, AConnectionGRpcClosesGivesItsPlaceBack) {
  GrpcAcceptorOptions options = Caps(4, 1);
  StartServer(std::move(options));
  // Not HTTP/2: gRPC closes it (shutdown, then close), and the acceptor sees it go.
  const int garbage = Raw();
  ASSERT_GE(garbage, 0);
  const std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(garbage, junk.data(), junk.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(junk.size()));
  EXPECT_TRUE(ClosedByServer(garbage));
  ASSERT_TRUE(WaitUntil([&] { return acceptor_->open() == 0; })) << acceptor_->open();
  std::shared_ptr<grpc::Channel> channel = NewChannel(acceptor_->port(), "after");
  EXPECT_TRUE(Call(*channel).ok());
  EXPECT_EQ(acceptor_->refused(), 0);
}

TEST_F(GrpcAcceptorTest, AConnectionPastTheHandshakeTimeoutGivesItsPlaceBack) {
  StartServer(Caps(4, 1), grpc::InsecureServerCredentials(), [](grpc::ServerBuilder& builder) {
    builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, 300);
  });
  const int silent = Raw();
  ASSERT_GE(silent, 0);
  ASSERT_TRUE(WaitUntil([&] { return acceptor_->open() == 1; }));
  // It holds the address's one place until gRPC gives up on it.
  const int second = Raw();
  ASSERT_GE(second, 0);
  EXPECT_TRUE(ClosedByServer(second));
  EXPECT_EQ(acceptor_->refused(), 1);
  EXPECT_TRUE(ClosedByServer(silent));
  ASSERT_TRUE(WaitUntil([&] { return acceptor_->open() == 0; })) << acceptor_->open();
  std::shared_ptr<grpc::Channel> channel = NewChannel(acceptor_->port(), "after");
  EXPECT_TRUE(Call(*channel).ok());
}

TEST_F(GrpcAcceptorTest, ServesTlsAndGivesBackThePlaceOfAFailedHandshake) {
  ::anyai::testing::TempDir dir;
  const std::string make_cert = absl::StrCat(
      "cd '", dir.path(),
      "' && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 "
      "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>openssl.log");
  ASSERT_EQ(std::system(make_cert.c_str()), 0) << ReadFile(dir.Sub("openssl.log"));
  const std::string cert = ReadFile(dir.Sub("cert.pem"));
  grpc::SslServerCredentialsOptions tls;
  tls.pem_key_cert_pairs.push_back({ReadFile(dir.Sub("key.pem")), cert});
  StartServer(Caps(4, 1), grpc::SslServerCredentials(tls));

  // Plaintext to the TLS listener: gRPC fails the handshake and closes it.
  const int plaintext = Raw();
  ASSERT_GE(plaintext, 0);
  const std::string hello = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  ASSERT_EQ(::send(plaintext, hello.data(), hello.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(hello.size()));
  EXPECT_TRUE(ClosedByServer(plaintext));
  ASSERT_TRUE(WaitUntil([&] { return acceptor_->open() == 0; })) << acceptor_->open();

  grpc::SslCredentialsOptions client;
  client.pem_root_certs = cert;
  std::shared_ptr<grpc::Channel> channel =
      NewChannel(acceptor_->port(), "tls", grpc::SslCredentials(client));
  EXPECT_TRUE(Call(*channel).ok());
  EXPECT_EQ(acceptor_->open(), 1);
  EXPECT_EQ(acceptor_->refused(), 0);
}

TEST_F(GrpcAcceptorTest, ATrustedPeerIsBoundOnlyByTheTotal) {
  GrpcAcceptorOptions options = Caps(4, 1);
  options.uncapped_peer = [](std::string_view peer) { return peer == "127.0.0.1"; };
  StartServer(std::move(options));
  for (int i = 0; i < 4; ++i) ASSERT_GE(Raw(), 0) << i;
  ASSERT_TRUE(WaitUntil([&] { return acceptor_->open() == 4; })) << acceptor_->open();
  const int fifth = Raw();
  ASSERT_GE(fifth, 0);
  EXPECT_TRUE(ClosedByServer(fifth));
  EXPECT_EQ(acceptor_->refused(), 1);
}

TEST_F(GrpcAcceptorTest, AcceptsAgainOnceDescriptorsAreFree) {
  StartServer(Caps(4, 2));
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);
  raw_.push_back(client);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  // The next descriptor would be `lowest`: a limit of `lowest` makes accept fail with EMFILE.
  const int lowest = ::dup(0);
  ASSERT_GE(lowest, 0);
  ::close(lowest);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(lowest);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(acceptor_->port()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // The kernel completes the connection into the backlog; the acceptor cannot take it yet.
  const int connected = ::connect(client, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  absl::SleepFor(absl::Milliseconds(200));
  const int64_t open_while_out = acceptor_->open();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_EQ(connected, 0) << std::strerror(errno);
  EXPECT_EQ(open_while_out, 0);
  EXPECT_TRUE(WaitUntil([&] { return acceptor_->open() == 1; })) << acceptor_->open();
  EXPECT_EQ(acceptor_->refused(), 0);
}

TEST_F(GrpcAcceptorTest, StopClosesTheListener) {
  StartServer(Caps(4, 2));
  std::shared_ptr<grpc::Channel> channel = NewChannel(acceptor_->port(), "before");
  ASSERT_TRUE(Call(*channel).ok());
  acceptor_->Stop();
  acceptor_->Stop();
  EXPECT_EQ(ConnectRaw(acceptor_->port()), -1);
  EXPECT_EQ(errno, ECONNREFUSED);
  // The connection gRPC already has is still gRPC's.
  EXPECT_TRUE(Call(*channel).ok());
}

TEST(GrpcAcceptorListenTest, ReportsWhatIsWrong) {
  EXPECT_THAT(GrpcAcceptor::Listen("localhost", GrpcAcceptorOptions{}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("grpc_listen")));
  GrpcAcceptorOptions admin;
  admin.field = "admin_listen";
  EXPECT_THAT(GrpcAcceptor::Listen("[::1", admin).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("admin_listen: ")));
  GrpcAcceptorOptions zero;
  zero.max_connections_per_address = 0;
  EXPECT_THAT(GrpcAcceptor::Listen("127.0.0.1:0", zero).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least 1")));
  absl::StatusOr<std::unique_ptr<GrpcAcceptor>> taken =
      GrpcAcceptor::Listen("127.0.0.1:0", GrpcAcceptorOptions{});
  ASSERT_OK(taken);
  EXPECT_THAT(
      GrpcAcceptor::Listen(absl::StrCat("127.0.0.1:", (*taken)->port()), GrpcAcceptorOptions{})
          .status(),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot listen")));
  EXPECT_THAT((*taken)->Start(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no server is attached")));
}

TEST(GrpcAcceptorListenTest, ListensOnIpv6) {
  absl::StatusOr<std::unique_ptr<GrpcAcceptor>> v6 =
      GrpcAcceptor::Listen("[::1]:0", GrpcAcceptorOptions{});
  if (!v6.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << v6.status();
  EXPECT_GT((*v6)->port(), 0);
}

TEST(GrpcAcceptorListenTest, TheTotalCapFitsTwoDescriptorsAConnection) {
  absl::StatusOr<std::unique_ptr<GrpcAcceptor>> acceptor =
      GrpcAcceptor::Listen("127.0.0.1:0", Caps(int64_t{1} << 40, 64));
  ASSERT_OK(acceptor);
  const int64_t fds = net::RaiseDescriptorLimit();
  EXPECT_LE((*acceptor)->max_connections(), fds / 2);
}

}  // namespace
}  // namespace anyai::server
