// Closed-loop unary gRPC load driver for any method: keeps --inflight calls outstanding over
// --channels connections with the generic (byte buffer) stub, so that the same driver measures
// anyai-server and the empty anchor service (bench/anchors/grpc-empty) alike.
//
//   grpc_load --target=127.0.0.1:50051 --method=/anyai.v1.AnyAI/CreateChatCompletion
//             --request=anyai_chat [--metadata=authorization:Bearer\ sk-...]
//             --inflight=64 --duration=10 --warmup=1
//   grpc_load --target=... --method=/anchor.Echo/Complete --request=@body.bin  (gRPC-framed,
//             as the anchor client's --dump-grpc-body writes it)
//   grpc_load --request=anyai_chat --dump_grpc_body=FILE  (writes the request gRPC-framed, for
//             h2load, and exits)
//
// Prints one line of key=value pairs: rps, latency percentiles (µs), and the count of each
// status code (RESOURCE_EXHAUSTED is a refusal: a decision all the same).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "anyai/v1/anyai.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "server address");
ABSL_FLAG(std::string, method, "/anyai.v1.AnyAI/CreateChatCompletion", "full method path");
ABSL_FLAG(std::string, request, "anyai_chat",
          "anyai_chat | anyai_check | @FILE (a gRPC-framed request body)");
ABSL_FLAG(std::vector<std::string>, metadata, {}, "KEY:VALUE pairs sent with every call");
ABSL_FLAG(int, inflight, 64, "calls kept outstanding");
ABSL_FLAG(int, channels, 2, "TCP connections");
ABSL_FLAG(int, threads, 2, "completion-queue threads");
ABSL_FLAG(double, duration, 10, "measured seconds");
ABSL_FLAG(double, warmup, 1, "seconds before measuring");
ABSL_FLAG(std::string, dump_grpc_body, "",
          "write the request gRPC-framed (5-byte prefix) to this file, for h2load, and exit");

namespace {

using Clock = std::chrono::steady_clock;

std::string RequestBytes(const std::string& spec) {
  if (spec == "anyai_chat") {
    anyai::v1::ChatCompletionRequest r;
    r.set_model("phi-2");
    auto* s = r.add_messages();
    s->set_role("system");
    s->set_content("You are a terse assistant.");
    auto* u = r.add_messages();
    u->set_role("user");
    u->set_content("Summarise the rate-limit policy in one sentence please.");
    return r.SerializeAsString();
  }
  if (spec == "anyai_check") return anyai::v1::CheckKeyRequest().SerializeAsString();
  if (!spec.empty() && spec[0] == '@') {
    std::ifstream in(spec.substr(1), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string framed = ss.str();
    return framed.size() >= 5 ? framed.substr(5) : std::string();  // drop the 5-byte frame
  }
  std::fprintf(stderr, "unknown --request=%s\n", spec.c_str());
  std::exit(2);
}

struct Slot {
  grpc::GenericStub* stub;
  grpc::CompletionQueue* cq;
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call;
  grpc::ByteBuffer response;
  grpc::Status status;
  Clock::time_point start;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string payload = RequestBytes(absl::GetFlag(FLAGS_request));
  if (const std::string dump = absl::GetFlag(FLAGS_dump_grpc_body); !dump.empty()) {
    std::string framed(5, '\0');  // uncompressed flag, then the big-endian length
    const uint32_t n = static_cast<uint32_t>(payload.size());
    for (int i = 0; i < 4; ++i) framed[1 + i] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
    std::ofstream(dump, std::ios::binary) << framed << payload;
    return 0;
  }
  const std::string method = absl::GetFlag(FLAGS_method);
  std::vector<std::pair<std::string, std::string>> metadata;
  for (const std::string& kv : absl::GetFlag(FLAGS_metadata)) {
    const size_t colon = kv.find(':');
    if (colon == std::string::npos) return 2;
    metadata.emplace_back(kv.substr(0, colon), kv.substr(colon + 1));
  }
  const int inflight = std::max(1, absl::GetFlag(FLAGS_inflight));
  const int nthreads = std::max(1, std::min(absl::GetFlag(FLAGS_threads), inflight));

  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_channels)); ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc_load.channel_index", i);  // distinct args: distinct connections
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel(absl::GetFlag(FLAGS_target),
                                             grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      std::fprintf(stderr, "cannot connect to %s\n", absl::GetFlag(FLAGS_target).c_str());
      return 1;
    }
    stubs.push_back(std::make_unique<grpc::GenericStub>(channel));
  }
  std::vector<std::unique_ptr<grpc::CompletionQueue>> cqs;
  for (int i = 0; i < nthreads; ++i) cqs.push_back(std::make_unique<grpc::CompletionQueue>());
  std::vector<std::unique_ptr<Slot>> slots;
  for (int i = 0; i < inflight; ++i) {
    auto s = std::make_unique<Slot>();
    s->stub = stubs[i % stubs.size()].get();
    s->cq = cqs[i % nthreads].get();
    slots.push_back(std::move(s));
  }
  const grpc::Slice slice(payload);
  auto start = [&](Slot* s) {
    s->ctx = std::make_unique<grpc::ClientContext>();
    for (const auto& [k, v] : metadata) s->ctx->AddMetadata(k, v);
    grpc::ByteBuffer request(&slice, 1);
    s->start = Clock::now();
    s->call = s->stub->PrepareUnaryCall(s->ctx.get(), method, request, s->cq);
    s->call->StartCall();
    s->call->Finish(&s->response, &s->status, s);
  };

  const auto t0 = Clock::now();
  const auto m0 = t0 + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(absl::GetFlag(FLAGS_warmup)));
  const auto m1 = m0 + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(absl::GetFlag(FLAGS_duration)));
  std::vector<std::vector<int64_t>> latencies(nthreads);
  std::vector<std::map<int, int64_t>> codes(nthreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < nthreads; ++t) {
    threads.emplace_back([&, t] {
      int outstanding = 0;
      for (auto& s : slots) {
        if (s->cq == cqs[t].get()) {
          start(s.get());
          ++outstanding;
        }
      }
      void* tag;
      bool ok;
      while (outstanding > 0 && cqs[t]->Next(&tag, &ok)) {
        auto* s = static_cast<Slot*>(tag);
        const auto now = Clock::now();
        --outstanding;
        if (now >= m0 && now < m1) {
          latencies[t].push_back(
              std::chrono::duration_cast<std::chrono::nanoseconds>(now - s->start).count());
          ++codes[t][ok ? s->status.error_code() : -1];
        }
        if (now < m1) {
          start(s);
          ++outstanding;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& cq : cqs) {
    cq->Shutdown();
    void* tag;
    bool ok;
    while (cq->Next(&tag, &ok)) {
    }
  }
  std::vector<int64_t> all;
  std::map<int, int64_t> by_code;
  for (int t = 0; t < nthreads; ++t) {
    all.insert(all.end(), latencies[t].begin(), latencies[t].end());
    for (auto [c, n] : codes[t]) by_code[c] += n;
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0.0 : all[static_cast<size_t>(p / 100 * (all.size() - 1))] / 1e3;
  };
  std::printf("calls=%zu rps=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f", all.size(),
              all.size() / absl::GetFlag(FLAGS_duration), pct(50), pct(90), pct(99));
  for (auto [c, n] : by_code) std::printf(" code%d=%lld", c, static_cast<long long>(n));
  std::printf("\n");
  return 0;
}
