// Limits survive `kill -9` (SPEC §6), end to end: a real anyai-server process under a load of
// chat completions from 4 client threads is SIGKILLed while calls are in flight, restarted on
// the same data dir, and must still count every admission a client saw succeed (and no more
// than those plus the calls the kill cut off), in the minute and in the day window. Run once
// per durability mode; the throughput of each is printed for information, never asserted.
//
// ctest runs it as e2e_restart_after_kill with ANYAI_SERVER_BINARY set to the server binary.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "anyai/v1/admin.grpc.pb.h"
#include "anyai/v1/anyai.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace anyai {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kAdminToken[] = "e2e-restart-admin-token";
constexpr char kModel[] = "llama-3-8b-chat";  // feature class "llm"
constexpr int kClientThreads = 4;
constexpr auto kLoadDuration = std::chrono::seconds(2);
// Generous: the same test runs against the AddressSanitizer build.
constexpr auto kStartTimeout = std::chrono::seconds(60);
constexpr auto kStopTimeout = std::chrono::seconds(30);
constexpr auto kCallTimeout = std::chrono::seconds(30);

// A plan with the seed's classes and limits, except the llm windows, which are given.
std::string PlanText(const std::string& name, int max_chars, int llm_per_minute, int llm_per_day) {
  return absl::StrFormat(R"txt(
plans {
  name: "%s"
  max_message_chars: %d
  classes {
    feature_class: "llm"
    windows { length { seconds: 60 } max_requests: %d }
    windows { length { seconds: 86400 } max_requests: %d }
  }
  classes {
    feature_class: "closed_llm"
    windows { length { seconds: 3600 } max_requests: 25 }
    windows { length { seconds: 86400 } max_requests: 100 }
  }
  classes {
    feature_class: "image_generation"
    windows { length { seconds: 60 } max_requests: 120 }
    windows { length { seconds: 86400 } max_requests: 750 }
  }
  classes {
    feature_class: "globalask"
    windows { length { seconds: 60 } max_requests: 120 }
    windows { length { seconds: 86400 } max_requests: 750 }
  }
  classes {
    feature_class: "imagine"
    windows { length { seconds: 86400 } max_requests: 20 }
  }
  classes {
    feature_class: "vision"
    windows { length { seconds: 3600 } max_requests: 25 }
    windows { length { seconds: 86400 } max_requests: 100 }
  }
  classes {
    feature_class: "meta"
    windows { length { seconds: 60 } max_requests: 600 }
  }
}
)txt",
                         name, max_chars, llm_per_minute, llm_per_day);
}

// The server's config: the seed's free plan, and a premium plan whose llm windows are far
// larger than the load, so that no request of the load is refused.
std::string ConfigText(const std::string& durability) {
  return absl::StrCat("durability: ", durability, "\n", PlanText("free", 1000, 10, 2000),
                      PlanText("premium", 5000, 1'000'000, 1'000'000));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  return s.size() > 20000 ? s.substr(s.size() - 20000) : s;
}

// One anyai-server child process. Its stdout is a pipe (the bound port is read from it; its
// end-of-file says the process is gone), its stderr a file that failures quote. The child dies
// with this process (PR_SET_PDEATHSIG), and the destructor SIGKILLs it if still running, so a
// failing test never leaves a server behind.
class ServerProcess {
 public:
  ServerProcess(std::string binary, std::vector<std::string> args, std::string stderr_path)
      : binary_(std::move(binary)), args_(std::move(args)), stderr_path_(std::move(stderr_path)) {}
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_fd_ >= 0) close(stdout_fd_);
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts the server and waits for its "grpc listening on HOST:PORT" and (printed last)
  // "admin listening on HOST:PORT" lines.
  void Start() {
    std::vector<std::string> argv_strings = {binary_};
    argv_strings.insert(argv_strings.end(), args_.begin(), args_.end());
    std::vector<char*> argv;
    for (std::string& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    std::string token_env = absl::StrCat("ANYAI_ADMIN_TOKEN=", kAdminToken);
    std::vector<char*> envp;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "ANYAI_ADMIN_TOKEN=", 18) != 0) envp.push_back(*e);
    }
    envp.push_back(token_env.data());
    envp.push_back(nullptr);

    int pipe_fds[2];
    ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0) << std::strerror(errno);
    const int stderr_fd =
        open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ASSERT_GE(stderr_fd, 0) << stderr_path_ << ": " << std::strerror(errno);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {  // the child: async-signal-safe calls only, until exec
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      dup2(pipe_fds[1], STDOUT_FILENO);
      dup2(stderr_fd, STDERR_FILENO);
      execve(argv[0], argv.data(), envp.data());
      constexpr char kExecFailed[] = "restart_test: execve of the server binary failed\n";
      (void)!write(STDERR_FILENO, kExecFailed, sizeof(kExecFailed) - 1);
      _exit(127);
    }
    pid_ = pid;
    close(pipe_fds[1]);
    close(stderr_fd);
    stdout_fd_ = pipe_fds[0];

    const Clock::time_point deadline = Clock::now() + kStartTimeout;
    std::string out;
    constexpr char kPrefix[] = "admin listening on ";
    // The port on the line that starts with `prefix`, once `out` has it whole.
    const auto port_of = [&out](const std::string& prefix) -> std::optional<std::string> {
      const std::size_t at = out.find(prefix);
      const std::size_t eol = at == std::string::npos ? at : out.find('\n', at);
      if (eol == std::string::npos) return std::nullopt;
      const std::string address = out.substr(at + prefix.size(), eol - at - prefix.size());
      return address.substr(address.rfind(':') + 1);
    };
    for (;;) {
      if (std::optional<std::string> admin_port = port_of(kPrefix); admin_port.has_value()) {
        admin_port_ = *admin_port;
        port_ = port_of("grpc listening on ").value_or("");
        ASSERT_FALSE(port_.empty() || admin_port_.empty()) << "no port in:\n" << out;
        break;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      ASSERT_GT(left.count(), 0) << "anyai-server printed no '" << kPrefix << "' line within "
                                 << kStartTimeout.count() << " s; stderr:\n"
                                 << ReadFile(stderr_path_);
      pollfd p{.fd = stdout_fd_, .events = POLLIN, .revents = 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buffer[4096];
      const ssize_t n = read(stdout_fd_, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {  // stdout closed: the server is exiting; reap it and say how it ended
        const int status = Kill();
        FAIL() << "anyai-server " << binary_ << " exited before listening ("
               << (WIFEXITED(status) ? absl::StrCat("status ", WEXITSTATUS(status))
                                     : absl::StrCat("signal ", WTERMSIG(status)))
               << "); stderr:\n"
               << ReadFile(stderr_path_);
      }
      out.append(buffer, static_cast<std::size_t>(n));
    }
  }

  std::string address() const { return "127.0.0.1:" + port_; }
  // The Admin service's own listener.
  std::string admin_address() const { return "127.0.0.1:" + admin_port_; }
  pid_t pid() const { return pid_; }

  // SIGKILL, and reap it. The wait status.
  int Kill() {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  // SIGTERM, then SIGKILL if it has not exited within kStopTimeout. Adds a failure unless it
  // exited by itself with status 0.
  void Stop() {
    ASSERT_GT(pid_, 0);
    kill(pid_, SIGTERM);
    const bool exited = WaitForStdoutEof(Clock::now() + kStopTimeout);
    if (!exited) kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    EXPECT_TRUE(exited) << "anyai-server did not stop within " << kStopTimeout.count()
                        << " s of SIGTERM; killed. stderr:\n"
                        << ReadFile(stderr_path_);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "anyai-server did not exit with status 0 after SIGTERM (wait status " << status
        << "); stderr:\n"
        << ReadFile(stderr_path_);
  }

 private:
  // The process is gone when its stdout pipe reaches end-of-file (nothing else holds it).
  bool WaitForStdoutEof(Clock::time_point deadline) {
    char buffer[4096];
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{.fd = stdout_fd_, .events = POLLIN, .revents = 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t n = read(stdout_fd_, buffer, sizeof(buffer));
      if (n == 0) return true;
      if (n < 0 && errno != EINTR) return true;
    }
  }

  std::string binary_;
  std::vector<std::string> args_;
  std::string stderr_path_;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string port_;
  std::string admin_port_;
};

std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->AddMetadata("authorization", "Bearer " + token);
  c->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  return c;
}

v1::ChatCompletionRequest Chat() {
  v1::ChatCompletionRequest req;
  req.set_model(kModel);
  v1::ChatMessage* m = req.add_messages();
  m->set_role("user");
  m->set_content("count me");
  return req;
}

// What one client thread saw.
struct ClientResult {
  int64_t succeeded = 0;
  // The first (and last: the thread stops there) failed call, if any.
  std::optional<grpc::Status> failure;
  Clock::time_point failed_at;
};

// The llm class's `used`, per window length in seconds, from a CheckKey response.
std::vector<std::pair<int64_t, int64_t>> LlmUsed(
    const google::protobuf::RepeatedPtrField<v1::ClassUsage>& classes) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const v1::ClassUsage& c : classes) {
    if (c.feature_class() != "llm") continue;
    for (const v1::WindowUsage& w : c.windows()) out.emplace_back(w.window().seconds(), w.used());
  }
  return out;
}

// `usage_survives`: false for DURABILITY_MEMORY, whose restart must forget every count (and
// still keep the key).
void KillMidLoadAndRestart(const std::string& durability, bool usage_survives = true) {
  const char* binary = std::getenv("ANYAI_SERVER_BINARY");
  ASSERT_TRUE(binary != nullptr && *binary != '\0')
      << "ANYAI_SERVER_BINARY is not set (ctest sets it to the anyai-server binary)";
  testing::TempDir dir;
  const std::string config_path = dir.Sub("anyai.textproto");
  {
    std::ofstream config(config_path);
    config << ConfigText(durability);
    ASSERT_TRUE(config.good()) << config_path;
  }
  const std::vector<std::string> args = {"--config=" + config_path, "--grpc_listen=127.0.0.1:0",
                                         "--http_listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
                                         "--data_dir=" + dir.Sub("data")};

  // The first life: a premium key, then a load that the kill interrupts.
  auto first = std::make_unique<ServerProcess>(binary, args, dir.Sub("server-1.stderr"));
  ASSERT_NO_FATAL_FAILURE(first->Start());
  std::string key;
  {
    auto admin = v1::Admin::NewStub(
        grpc::CreateChannel(first->admin_address(), grpc::InsecureChannelCredentials()));
    v1::CreateKeyRequest req;
    req.set_plan("premium");
    req.set_label("restart test");
    v1::CreateKeyResponse resp;
    auto c = Context(kAdminToken);
    grpc::Status s = admin->CreateKey(c.get(), req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
    key = resp.key();
  }

  std::atomic<bool> start{false};
  std::atomic<int> in_flight{0};
  std::vector<ClientResult> results(kClientThreads);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClientThreads; ++i) {
    clients.emplace_back([&, i] {
      // A channel (and so a connection) per thread, as independent clients would have.
      grpc::ChannelArguments channel_args;
      channel_args.SetInt("anyai.e2e.client", i);
      auto stub = v1::AnyAI::NewStub(grpc::CreateCustomChannel(
          first->address(), grpc::InsecureChannelCredentials(), channel_args));
      const v1::ChatCompletionRequest req = Chat();
      while (!start.load(std::memory_order_acquire)) std::this_thread::yield();
      for (;;) {
        v1::ChatCompletion resp;
        auto c = Context(key);
        in_flight.fetch_add(1, std::memory_order_relaxed);
        grpc::Status s = stub->CreateChatCompletion(c.get(), req, &resp);
        in_flight.fetch_sub(1, std::memory_order_relaxed);
        if (!s.ok()) {
          results[i].failure = s;
          results[i].failed_at = Clock::now();
          return;  // the server is gone (or failed): this client stops here
        }
        ++results[i].succeeded;
      }
    });
  }
  const Clock::time_point load_start = Clock::now();
  start.store(true, std::memory_order_release);
  std::this_thread::sleep_for(kLoadDuration);  // the load itself, not a wait for a condition
  const int in_flight_at_kill = in_flight.load(std::memory_order_relaxed);
  const Clock::time_point killed_at = Clock::now();
  const int kill_status = first->Kill();
  for (std::thread& t : clients) t.join();
  EXPECT_TRUE(WIFSIGNALED(kill_status) && WTERMSIG(kill_status) == SIGKILL)
      << "wait status " << kill_status;

  int64_t succeeded = 0;
  int64_t cut_off = 0;  // calls that failed at the kill: each may or may not have been counted
  for (const ClientResult& r : results) {
    succeeded += r.succeeded;
    if (r.failure.has_value()) {
      ++cut_off;
      EXPECT_GE(r.failed_at, killed_at)
          << "a call failed before the kill: " << r.failure->error_code() << ": "
          << r.failure->error_message();
    }
  }
  EXPECT_EQ(cut_off, kClientThreads) << "every client stops at its first failed call";
  const double seconds = std::chrono::duration<double>(killed_at - load_start).count();
  ASSERT_GT(succeeded, 0) << "no call succeeded before the kill";

  // The second life, on the same data dir.
  const Clock::time_point restart_begin = Clock::now();
  ServerProcess second(binary, args, dir.Sub("server-2.stderr"));
  ASSERT_NO_FATAL_FAILURE(second.Start());
  const double restart_seconds =
      std::chrono::duration<double>(Clock::now() - restart_begin).count();
  auto channel = grpc::CreateChannel(second.address(), grpc::InsecureChannelCredentials());
  auto anyai = v1::AnyAI::NewStub(channel);
  auto admin_channel =
      grpc::CreateChannel(second.admin_address(), grpc::InsecureChannelCredentials());
  auto admin = v1::Admin::NewStub(admin_channel);

  v1::CheckKeyResponse check;
  {
    auto c = Context(key);  // the key in metadata: it must still authenticate
    grpc::Status s = anyai->CheckKey(c.get(), v1::CheckKeyRequest(), &check);
    ASSERT_TRUE(s.ok()) << "the key no longer authenticates after the restart: " << s.error_code()
                        << ": " << s.error_message();
  }
  EXPECT_EQ(check.plan(), "premium");
  v1::GetUsageResponse usage;
  {
    v1::GetUsageRequest req;
    req.set_key(key);
    auto c = Context(kAdminToken);
    grpc::Status s = admin->GetUsage(c.get(), req, &usage);
    ASSERT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
  }

  const std::vector<int64_t> window_seconds = {60, 86400};  // the minute and the day
  for (const auto& [source, used] : {std::pair{"CheckKey", LlmUsed(check.classes())},
                                     std::pair{"GetUsage", LlmUsed(usage.classes())}}) {
    ASSERT_EQ(used.size(), window_seconds.size()) << source << ": llm windows";
    for (std::size_t w = 0; w < used.size(); ++w) {
      EXPECT_EQ(used[w].first, window_seconds[w]) << source;
      if (!usage_survives) {
        EXPECT_EQ(used[w].second, 0) << source << ": memory durability kept usage over a restart";
        continue;
      }
      EXPECT_GE(used[w].second, succeeded)
          << source << ", " << used[w].first << " s window: admissions that clients saw "
          << "succeed were lost by the kill";
      EXPECT_LE(used[w].second, succeeded + cut_off)
          << source << ", " << used[w].first << " s window: more counted than were admitted";
    }
  }

  {
    v1::ChatCompletion resp;
    auto c = Context(key);
    grpc::Status s = anyai->CreateChatCompletion(c.get(), Chat(), &resp);
    EXPECT_TRUE(s.ok()) << "a chat with the key after the restart: " << s.error_code() << ": "
                        << s.error_message();
  }
  // Hang up first: gRPC's graceful shutdown waits (up to the server's 5 s grace) for
  // connected clients, even idle ones, to go away.
  anyai.reset();
  admin.reset();
  channel.reset();
  const Clock::time_point stop_begin = Clock::now();
  second.Stop();
  const double stop_seconds = std::chrono::duration<double>(Clock::now() - stop_begin).count();

  const std::vector<std::pair<int64_t, int64_t>> used = LlmUsed(check.classes());
  std::cout << absl::StrFormat(
                   "[ info ] %s: %d chats succeeded in %.2f s from %d client threads = %.0f "
                   "chats/s; %d in flight at the kill; after the restart llm used = %d "
                   "(minute), %d (day); restart took %.2f s, graceful stop %.2f s",
                   durability, succeeded, seconds, kClientThreads, succeeded / seconds,
                   in_flight_at_kill, used.empty() ? -1 : used[0].second,
                   used.size() < 2 ? -1 : used[1].second, restart_seconds, stop_seconds)
            << std::endl;
  ::testing::Test::RecordProperty(absl::StrCat("chats_per_second_", durability),
                                  static_cast<int>(succeeded / seconds));
}

TEST(RestartAfterKill, KeepsEveryAcknowledgedAdmissionWithDefaultDurability) {
  KillMidLoadAndRestart("DURABILITY_PROCESS_CRASH");
}

TEST(RestartAfterKill, KeepsEveryAcknowledgedAdmissionWithFsyncDurability) {
  KillMidLoadAndRestart("DURABILITY_FSYNC");
}

TEST(RestartAfterKill, ForgetsUsageButKeepsKeysWithMemoryDurability) {
  KillMidLoadAndRestart("DURABILITY_MEMORY", /*usage_survives=*/false);
}

}  // namespace
}  // namespace anyai
