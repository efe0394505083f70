// Closed-loop unary load driver for the empty Echo service.
//
//   client --target=127.0.0.1:50051 --inflight=64 --channels=2 --duration=10
//          [--warmup=1] [--api=cq|callback] [--threads=2]
//   client --dump-grpc-body=FILE     (writes one gRPC-framed request, for h2load)
//
// --inflight RPCs are kept outstanding at all times; each completion
// immediately starts the next RPC on the same slot.  Slots are spread
// round-robin over --channels channels, each built with a distinct channel
// arg so that they do not share a subchannel (= distinct TCP connections).
// --api=cq (default): async stub + --threads completion-queue polling threads.
// --api=callback: stub->async()->Complete(..., lambda) on gRPC's own threads.
// Latencies are recorded only after --warmup seconds, for --duration seconds;
// RPCs/s = completions inside the measured window / window length.
// Output: one line of key=value pairs.
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "echo.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Log-linear histogram of nanoseconds, 64 sub-buckets per power of two
// (<= ~1.6% relative error).  Not thread-safe; one per recording thread, or
// used with atomics in callback mode (see AtomicHist).
constexpr int kSub = 64;
constexpr int kBuckets = 64 * kSub;

inline int BucketOf(uint64_t v) {
  if (v < kSub) return static_cast<int>(v);
  int msb = 63 - __builtin_clzll(v);
  uint64_t sub = v >> (msb - 6);  // in [64,127]
  return (msb - 5) * kSub + static_cast<int>(sub - kSub);
}
inline double BucketMid(int idx) {
  if (idx < kSub) return idx;
  int msb = idx / kSub + 5;
  uint64_t sub = idx % kSub + kSub;
  uint64_t lo = sub << (msb - 6);
  uint64_t width = 1ull << (msb - 6);
  return static_cast<double>(lo) + width / 2.0;
}

struct Hist {
  std::vector<uint64_t> b = std::vector<uint64_t>(kBuckets, 0);
  uint64_t n = 0;
  double sum = 0;
  void Add(uint64_t v) {
    b[BucketOf(v)]++;
    n++;
    sum += v;
  }
  void Merge(const Hist& o) {
    for (int i = 0; i < kBuckets; ++i) b[i] += o.b[i];
    n += o.n;
    sum += o.sum;
  }
  double Pct(double p) const {
    if (n == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(p / 100.0 * (n - 1)) + 1;
    uint64_t c = 0;
    for (int i = 0; i < kBuckets; ++i) {
      c += b[i];
      if (c >= rank) return BucketMid(i);
    }
    return BucketMid(kBuckets - 1);
  }
};

struct AtomicHist {
  std::vector<std::atomic<uint64_t>> b;
  AtomicHist() : b(kBuckets) {
    for (auto& x : b) x.store(0, std::memory_order_relaxed);
  }
  void Add(uint64_t v) { b[BucketOf(v)].fetch_add(1, std::memory_order_relaxed); }
  Hist Snapshot() const {
    Hist h;
    for (int i = 0; i < kBuckets; ++i) {
      uint64_t c = b[i].load(std::memory_order_relaxed);
      h.b[i] = c;
      h.n += c;
      h.sum += c * BucketMid(i);
    }
    return h;
  }
};

anchor::EchoRequest MakeRequest() {
  anchor::EchoRequest r;
  r.set_model("anchor-echo-1");
  auto* m1 = r.add_messages();
  m1->set_role("system");
  m1->set_content("You are a terse assistant.");
  auto* m2 = r.add_messages();
  m2->set_role("user");
  m2->set_content("Summarise the rate-limit policy in one sentence please.");
  return r;
}

const char* Flag(int argc, char** argv, const char* name, const char* def) {
  size_t n = std::strlen(name);
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
  return def;
}

struct Config {
  std::string target;
  int inflight, channels, threads;
  double duration, warmup;
  std::string api;
};

std::vector<std::shared_ptr<grpc::Channel>> MakeChannels(const Config& cfg) {
  std::vector<std::shared_ptr<grpc::Channel>> chans;
  for (int i = 0; i < cfg.channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("anchor.channel_index", i);  // distinct args -> own subchannel
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto ch = grpc::CreateCustomChannel(cfg.target, grpc::InsecureChannelCredentials(), args);
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
      std::fprintf(stderr, "channel %d did not connect to %s\n", i, cfg.target.c_str());
      std::exit(1);
    }
    chans.push_back(ch);
  }
  return chans;
}

struct Result {
  Hist hist;
  uint64_t errors = 0;
  double window_s = 0;
  size_t resp_bytes = 0;  // serialized size of a received response
};

// ------------------------------------------------------------ CQ async client
struct CqSlot {
  anchor::Echo::Stub* stub;
  grpc::CompletionQueue* cq;
  std::unique_ptr<grpc::ClientContext> ctx;
  anchor::EchoResponse resp;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<anchor::EchoResponse>> rpc;
  int64_t start_ns = 0;
};

Result RunCq(const Config& cfg, const anchor::EchoRequest& req) {
  auto chans = MakeChannels(cfg);
  std::vector<std::unique_ptr<anchor::Echo::Stub>> stubs;
  for (auto& c : chans) stubs.push_back(anchor::Echo::NewStub(c));
  int nthreads = std::max(1, std::min(cfg.threads, cfg.inflight));
  std::vector<std::unique_ptr<grpc::CompletionQueue>> cqs;
  for (int i = 0; i < nthreads; ++i) cqs.emplace_back(new grpc::CompletionQueue);

  std::vector<std::unique_ptr<CqSlot>> slots;
  for (int i = 0; i < cfg.inflight; ++i) {
    auto s = std::make_unique<CqSlot>();
    s->stub = stubs[i % stubs.size()].get();
    s->cq = cqs[i % nthreads].get();
    slots.push_back(std::move(s));
  }
  auto start = [&req](CqSlot* s) {
    s->ctx = std::make_unique<grpc::ClientContext>();
    s->start_ns = NowNs();
    s->rpc = s->stub->AsyncComplete(s->ctx.get(), req, s->cq);
    s->rpc->Finish(&s->resp, &s->status, s);
  };

  const int64_t t0 = NowNs();
  const int64_t m0 = t0 + static_cast<int64_t>(cfg.warmup * 1e9);
  const int64_t m1 = m0 + static_cast<int64_t>(cfg.duration * 1e9);
  std::vector<Hist> hists(nthreads);
  std::vector<uint64_t> errs(nthreads, 0);

  std::vector<std::thread> ths;
  for (int t = 0; t < nthreads; ++t) {
    ths.emplace_back([&, t] {
      int outstanding = 0;
      for (auto& s : slots)
        if (s->cq == cqs[t].get()) {
          start(s.get());
          outstanding++;
        }
      void* tag;
      bool ok;
      while (outstanding > 0 && cqs[t]->Next(&tag, &ok)) {
        auto* s = static_cast<CqSlot*>(tag);
        int64_t now = NowNs();
        outstanding--;
        if (!ok || !s->status.ok()) errs[t]++;
        if (now >= m0 && now < m1) hists[t].Add(now - s->start_ns);
        if (now < m1) {
          start(s);
          outstanding++;
        }
      }
    });
  }
  for (auto& th : ths) th.join();
  for (auto& cq : cqs) {
    cq->Shutdown();
    void* tag;
    bool ok;
    while (cq->Next(&tag, &ok)) {
    }
  }
  Result r;
  r.resp_bytes = slots[0]->resp.ByteSizeLong();
  for (auto& h : hists) r.hist.Merge(h);
  for (auto e : errs) r.errors += e;
  r.window_s = cfg.duration;
  return r;
}

// ------------------------------------------------------------ callback client
Result RunCallback(const Config& cfg, const anchor::EchoRequest& req) {
  auto chans = MakeChannels(cfg);
  std::vector<std::unique_ptr<anchor::Echo::Stub>> stubs;
  for (auto& c : chans) stubs.push_back(anchor::Echo::NewStub(c));

  struct Slot {
    anchor::Echo::Stub* stub;
    std::unique_ptr<grpc::ClientContext> ctx;
    anchor::EchoResponse resp;
    int64_t start_ns = 0;
  };
  std::vector<std::unique_ptr<Slot>> slots;
  for (int i = 0; i < cfg.inflight; ++i) {
    auto s = std::make_unique<Slot>();
    s->stub = stubs[i % stubs.size()].get();
    slots.push_back(std::move(s));
  }
  AtomicHist hist;
  std::atomic<uint64_t> errors{0};
  std::mutex mu;
  std::condition_variable cv;
  int outstanding = cfg.inflight;

  const int64_t t0 = NowNs();
  const int64_t m0 = t0 + static_cast<int64_t>(cfg.warmup * 1e9);
  const int64_t m1 = m0 + static_cast<int64_t>(cfg.duration * 1e9);

  std::function<void(Slot*)> start = [&](Slot* s) {
    s->ctx = std::make_unique<grpc::ClientContext>();
    s->start_ns = NowNs();
    s->stub->async()->Complete(s->ctx.get(), &req, &s->resp, [&, s](grpc::Status st) {
      int64_t now = NowNs();
      if (!st.ok()) errors.fetch_add(1, std::memory_order_relaxed);
      if (now >= m0 && now < m1) hist.Add(now - s->start_ns);
      if (now < m1) {
        start(s);
      } else {
        std::lock_guard<std::mutex> l(mu);
        if (--outstanding == 0) cv.notify_all();
      }
    });
  };
  for (auto& s : slots) start(s.get());
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return outstanding == 0; });
  }
  Result r;
  r.resp_bytes = slots[0]->resp.ByteSizeLong();
  r.hist = hist.Snapshot();
  r.errors = errors.load();
  r.window_s = cfg.duration;
  return r;
}

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const anchor::EchoRequest req = MakeRequest();

  if (const char* dump = Flag(argc, argv, "--dump-grpc-body", nullptr)) {
    std::string payload = req.SerializeAsString();
    std::string framed(5, '\0');
    uint32_t len = payload.size();
    framed[1] = static_cast<char>((len >> 24) & 0xff);
    framed[2] = static_cast<char>((len >> 16) & 0xff);
    framed[3] = static_cast<char>((len >> 8) & 0xff);
    framed[4] = static_cast<char>(len & 0xff);
    framed += payload;
    std::ofstream(dump, std::ios::binary) << framed;
    std::fprintf(stderr, "wrote %s: %zu bytes (payload %u)\n", dump, framed.size(), len);
    return 0;
  }

  Config cfg;
  cfg.target = Flag(argc, argv, "--target", "127.0.0.1:50051");
  cfg.inflight = std::atoi(Flag(argc, argv, "--inflight", "1"));
  cfg.channels = std::atoi(Flag(argc, argv, "--channels", "2"));
  cfg.threads = std::atoi(Flag(argc, argv, "--threads", "2"));
  cfg.duration = std::atof(Flag(argc, argv, "--duration", "10"));
  cfg.warmup = std::atof(Flag(argc, argv, "--warmup", "1"));
  cfg.api = Flag(argc, argv, "--api", "cq");
  if (cfg.inflight < 1 || cfg.channels < 1) {
    std::fprintf(stderr, "--inflight and --channels must be >= 1\n");
    return 2;
  }

  const double cpu0 = CpuSeconds();
  Result r;
  if (cfg.api == "cq") {
    r = RunCq(cfg, req);
  } else if (cfg.api == "callback") {
    r = RunCallback(cfg, req);
  } else {
    std::fprintf(stderr, "unknown --api=%s (cq|callback)\n", cfg.api.c_str());
    return 2;
  }
  const double cpu = CpuSeconds() - cpu0;
  const double total_s = cfg.warmup + cfg.duration;

  std::printf(
      "api=%s inflight=%d channels=%d rpcs=%llu errors=%llu rps=%.0f "
      "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f mean_us=%.1f "
      "client_cpu_cores=%.2f req_bytes=%zu resp_bytes=%zu\n",
      cfg.api.c_str(), cfg.inflight, cfg.channels, static_cast<unsigned long long>(r.hist.n),
      static_cast<unsigned long long>(r.errors), r.hist.n / r.window_s, r.hist.Pct(50) / 1e3,
      r.hist.Pct(90) / 1e3, r.hist.Pct(99) / 1e3, r.hist.Pct(99.9) / 1e3,
      r.hist.n ? r.hist.sum / r.hist.n / 1e3 : 0.0, cpu / total_s, req.ByteSizeLong(),
      r.resp_bytes);
  return r.errors ? 1 : 0;
}
