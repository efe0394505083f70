// Embedding the quota engine in any C++ program: no server, no storage, one header.
// Admits a burst of chat requests for two tenants on the free plan and prints each decision,
// then the usage report /check would show; then, with a token window added to the plan,
// reserves a call's estimated tokens and settles it to what it used. Built as
// build/bin/quota-embed-example and run by the tests (its output is checked there).
#include <cstdio>
#include <string>

#include "absl/time/time.h"
#include "quota/engine.h"

int main() {
  namespace quota = anyai::quota;
  absl::StatusOr<std::unique_ptr<quota::Engine>> engine =
      quota::Engine::Create(quota::DefaultPlanTable(), quota::EngineOptions{});
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    return 1;
  }
  const quota::PlanId free_plan = *(*engine)->FindPlan(quota::kFreePlan);
  const quota::ClassId llm = *(*engine)->FindClass(quota::kLlm);
  // The engine reads no clock: the caller passes the time of each decision.
  const absl::Time now = absl::FromUnixSeconds(1'767'225'600);
  for (const char* tenant : {"ip:203.0.113.7", "ip:198.51.100.2"}) {
    int admitted = 0;
    for (int i = 0; i < 12; ++i) {
      absl::StatusOr<quota::Decision> d = (*engine)->Admit(tenant, free_plan, llm, now);
      if (!d.ok()) return 1;
      if (d->admitted) {
        ++admitted;
      } else {
        std::printf("%s: request %d refused by the %s window of \"%s\", retry after %s\n", tenant,
                    i + 1, absl::FormatDuration(d->refused_window).c_str(),
                    (*engine)->class_name(d->refused_class).c_str(),
                    absl::FormatDuration(d->retry_after).c_str());
      }
    }
    std::printf("%s: %d of 12 admitted\n", tenant, admitted);
  }
  absl::StatusOr<quota::UsageSnapshot> usage =
      (*engine)->Usage("ip:203.0.113.7", free_plan, now + absl::Seconds(30));
  if (!usage.ok()) return 1;
  for (const quota::ClassUsage& c : usage->classes) {
    for (const quota::WindowUsage& w : c.windows) {
      std::printf("%-16s %-8s used %4lld of %4lld, reset in %s\n", c.feature_class.c_str(),
                  absl::FormatDuration(w.window).c_str(), static_cast<long long>(w.used),
                  static_cast<long long>(w.limit), absl::FormatDuration(w.reset).c_str());
    }
  }
  // Tokens: reserve the estimate (prompt + max_tokens) when the call starts, settle to the
  // provider's usage when it ends; what was not used comes back at once.
  quota::PlanTable plans = quota::DefaultPlanTable();
  for (quota::Plan& plan : plans.plans) {
    // Every plan meters llm; give it 2,000 tokens per minute.
    for (quota::ClassLimits& c : plan.classes) {
      if (c.feature_class == quota::kLlm) c.token_windows = {{absl::Minutes(1), 2000}};
    }
  }
  absl::StatusOr<std::unique_ptr<quota::Engine>> metered =
      quota::Engine::Create(std::move(plans), quota::EngineOptions{});
  if (!metered.ok()) return 1;
  const quota::PlanId free_tokens = *(*metered)->FindPlan(quota::kFreePlan);
  absl::StatusOr<quota::Reservation> call =
      (*metered)->Reserve("ip:203.0.113.7", free_tokens, llm, {.requests = 1, .tokens = 1500}, now);
  if (!call.ok() || !call->admitted()) return 1;
  std::printf("reserved 1500 tokens, %lld left this minute\n",
              static_cast<long long>(call->decision().tokens->remaining));
  absl::StatusOr<quota::Reservation> second =
      (*metered)->Reserve("ip:203.0.113.7", free_tokens, llm, {.requests = 1, .tokens = 1000}, now);
  if (!second.ok()) return 1;
  std::printf("a second call for 1000 tokens: %s\n",
              second->admitted() ? "admitted" : "refused by the token window");
  absl::StatusOr<quota::Settlement> settled =
      (*metered)->Settle(*call, {.requests = 1, .tokens = 420}, now);
  if (!settled.ok()) return 1;
  std::printf("settled at 420 tokens: %lld came back\n",
              static_cast<long long>(settled->refunded.tokens));
  second =
      (*metered)->Reserve("ip:203.0.113.7", free_tokens, llm, {.requests = 1, .tokens = 1000}, now);
  if (!second.ok()) return 1;
  std::printf("the second call again: %s\n", second->admitted() ? "admitted" : "refused");
  return 0;
}
