// Empty gRPC unary server: returns a fixed ~200-byte response.
//
//   server --port=50051 --mode=callback        (default; CallbackServerContext +
//   ServerUnaryReactor) server --port=50051 --mode=async --cqs=2   (completion-queue async API, one
//   thread per CQ)
//   server ... --metadata=FILE   (async mode) every call also answers what FILE holds, as
//   anyai-server answers a chat call: one `initial NAME HEX` or `trailing NAME HEX` line per
//   metadata entry (HEX: the value's bytes in hexadecimal, so binary -bin values fit; `-` for
//   none), and at
//   most one `status CODE HEX-MESSAGE HEX-DETAILS` line, which makes the call fail with that
//   status (its details in grpc-status-details-bin) instead of answering the fixed response.
//   bench/grpc_reply_like.py writes such a file from a live anyai-server call, so that the
//   framework's own cost of anyai's metadata and error details is measured apart from anyai's
//   code (bench/grpc_metadata_cost.sh).
//
// Stops cleanly on SIGINT/SIGTERM.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "echo.grpc.pb.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

anchor::EchoResponse MakeFixedResponse() {
  anchor::EchoResponse r;
  r.set_id("chatcmpl-0123456789abcdef0123456789abcdef");
  r.set_content(
      "This is a fixed completion returned by an empty gRPC service. It is "
      "long enough to make the response about two hundred bytes on the wire, "
      "like a short chat answer.");
  r.set_prompt_tokens(27);
  r.set_completion_tokens(38);
  r.set_total_tokens(65);
  return r;
}

const anchor::EchoResponse& Fixed() {
  static const anchor::EchoResponse kFixed = MakeFixedResponse();
  return kFixed;
}

// What --metadata=FILE makes every async call answer besides (or instead of) the response.
struct Reply {
  std::vector<std::pair<std::string, std::string>> initial;
  std::vector<std::pair<std::string, std::string>> trailing;
  std::optional<grpc::Status> status;  // set: the call fails with it
};

// `-` stands for no bytes, so that every field of a line is there.
std::string FromHex(const std::string& hex) {
  std::string out;
  if (hex == "-") return out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

bool LoadReply(const std::string& path, Reply& reply) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string kind, a, b, c;
    fields >> kind >> a >> b >> c;
    if (kind == "initial") {
      reply.initial.emplace_back(a, FromHex(b));
    } else if (kind == "trailing") {
      reply.trailing.emplace_back(a, FromHex(b));
    } else if (kind == "status") {
      reply.status =
          grpc::Status(static_cast<grpc::StatusCode>(std::atoi(a.c_str())), FromHex(b), FromHex(c));
    } else if (!kind.empty()) {
      return false;
    }
  }
  return true;
}

const Reply* g_reply = nullptr;  // set once in main before any call

// ---------------------------------------------------------------- callback API
class CallbackEcho final : public anchor::Echo::CallbackService {
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* ctx,
                                     const anchor::EchoRequest* /*req*/,
                                     anchor::EchoResponse* resp) override {
    resp->CopyFrom(Fixed());
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// ---------------------------------------------------------------- CQ async API
class CallData {
 public:
  CallData(anchor::Echo::AsyncService* svc, grpc::ServerCompletionQueue* cq)
      : svc_(svc), cq_(cq), responder_(&ctx_) {
    svc_->RequestComplete(&ctx_, &req_, &responder_, cq_, cq_, this);
  }
  // ok == false means the CQ is shutting down (for the request stage).
  void Proceed(bool ok) {
    if (state_ == kWaiting) {
      if (!ok) {
        delete this;
        return;
      }
      new CallData(svc_, cq_);  // re-arm before doing any work
      state_ = kFinishing;
      if (g_reply != nullptr) {
        // As anyai-server does it: one std::string pair copied in per entry.
        for (const auto& [name, value] : g_reply->initial) ctx_.AddInitialMetadata(name, value);
        for (const auto& [name, value] : g_reply->trailing) ctx_.AddTrailingMetadata(name, value);
        if (g_reply->status.has_value()) {
          responder_.FinishWithError(*g_reply->status, this);
          return;
        }
      }
      resp_.CopyFrom(Fixed());
      responder_.Finish(resp_, grpc::Status::OK, this);
    } else {
      delete this;
    }
  }

 private:
  enum State { kWaiting, kFinishing };
  anchor::Echo::AsyncService* svc_;
  grpc::ServerCompletionQueue* cq_;
  grpc::ServerContext ctx_;
  anchor::EchoRequest req_;
  anchor::EchoResponse resp_;
  grpc::ServerAsyncResponseWriter<anchor::EchoResponse> responder_;
  State state_ = kWaiting;
};

void ServeCq(anchor::Echo::AsyncService* svc, grpc::ServerCompletionQueue* cq, int prepost) {
  for (int i = 0; i < prepost; ++i) new CallData(svc, cq);
  void* tag;
  bool ok;
  while (cq->Next(&tag, &ok)) static_cast<CallData*>(tag)->Proceed(ok);
}

const char* Flag(int argc, char** argv, const char* name, const char* def) {
  size_t n = std::strlen(name);
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string port = Flag(argc, argv, "--port", "50051");
  const std::string mode = Flag(argc, argv, "--mode", "callback");
  const int cqs = std::atoi(Flag(argc, argv, "--cqs", "2"));
  const int prepost = std::atoi(Flag(argc, argv, "--prepost", "256"));
  const std::string metadata = Flag(argc, argv, "--metadata", "");
  Reply reply;
  if (!metadata.empty()) {
    if (mode != "async" || !LoadReply(metadata, reply)) {
      std::fprintf(stderr, "--metadata=%s: unreadable, or not --mode=async\n", metadata.c_str());
      return 2;
    }
    g_reply = &reply;
  }

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  const std::string addr = "127.0.0.1:" + port;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(addr, grpc::InsecureServerCredentials());

  CallbackEcho cb_service;
  anchor::Echo::AsyncService async_service;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cq_list;
  if (mode == "callback") {
    builder.RegisterService(&cb_service);
  } else if (mode == "async") {
    builder.RegisterService(&async_service);
    for (int i = 0; i < cqs; ++i) cq_list.push_back(builder.AddCompletionQueue());
  } else {
    std::fprintf(stderr, "unknown --mode=%s (callback|async)\n", mode.c_str());
    return 2;
  }

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "failed to listen on %s\n", addr.c_str());
    return 1;
  }
  std::fprintf(stderr, "listening on %s mode=%s%s\n", addr.c_str(), mode.c_str(),
               mode == "async" ? (" cqs=" + std::to_string(cqs)).c_str() : "");

  std::vector<std::thread> threads;
  for (auto& cq : cq_list) threads.emplace_back(ServeCq, &async_service, cq.get(), prepost);

  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));

  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  for (auto& cq : cq_list) cq->Shutdown();
  for (auto& t : threads) t.join();
  // Drain anything left after the threads exited (none expected).
  return 0;
}
