// Whether the client of the call running on this thread is still there, for providers that
// block on an upstream and would otherwise learn of a departed client only at their next chunk
// (or their timeout) — holding its in-flight slot and its reservation all that while.
//
//   // A front, around the call (the probe must be cheap and thread-safe):
//   ScopedClientProbe probe(+[](const void* ctx) { return Cancelled(ctx); }, &context);
//   gateway.StreamChat(...);
//   // A provider, while it waits (the OpenAI provider: every 250 ms of upstream silence):
//   if (ClientGone()) return absl::CancelledError("the client went away");
//
// Thread safety: the probe belongs to the thread that installs it; ClientGone() reads this
// thread's. Scopes nest (the inner one wins until it ends).
#ifndef ANYAI_SERVER_GATEWAY_CLIENT_PRESENCE_H_
#define ANYAI_SERVER_GATEWAY_CLIENT_PRESENCE_H_

namespace anyai::server {

class ScopedClientProbe {
 public:
  using Probe = bool (*)(const void* context);
  // `gone(context)` says whether the client left; `context` must outlive the scope.
  ScopedClientProbe(Probe gone, const void* context);
  ~ScopedClientProbe();
  ScopedClientProbe(const ScopedClientProbe&) = delete;
  ScopedClientProbe& operator=(const ScopedClientProbe&) = delete;

  bool gone() const { return gone_(context_); }

 private:
  const Probe gone_;
  const void* const context_;
  const ScopedClientProbe* const outer_;
};

// True when a probe is installed on this thread and says the client left; false otherwise.
bool ClientGone();

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_CLIENT_PRESENCE_H_
