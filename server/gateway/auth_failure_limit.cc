#include "server/gateway/auth_failure_limit.h"

#include <algorithm>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace anyai::server {
namespace {

absl::string_view Key(std::string_view network) {
  return absl::string_view(network.data(), network.size());
}

}  // namespace

AuthFailureLimit::AuthFailureLimit(Options options)
    : options_(options), per_shard_(std::max<size_t>(1, options.max_networks / kShards)) {}

AuthFailureLimit::Shard& AuthFailureLimit::ShardOf(std::string_view network) const {
  return shards_[absl::HashOf(Key(network)) % kShards];
}

absl::Duration AuthFailureLimit::RetryAfter(std::string_view network, absl::Time now) const {
  if (options_.max_failures <= 0) return absl::ZeroDuration();
  const size_t max = static_cast<size_t>(options_.max_failures);
  Shard& shard = ShardOf(network);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.failures.find(Key(network));
  if (it == shard.failures.end()) return absl::ZeroDuration();
  const std::vector<absl::Time>& times = it->second;
  // Failures at or before now - window have left it.
  const auto first_inside = std::upper_bound(times.begin(), times.end(), now - options_.window);
  const size_t inside = static_cast<size_t>(times.end() - first_inside);
  if (inside < max) return absl::ZeroDuration();
  // Room comes back when the oldest of the last `max` failures leaves the window.
  return *(times.end() - max) + options_.window - now;
}

void AuthFailureLimit::RecordFailure(std::string_view network, absl::Time now) {
  if (options_.max_failures <= 0) return;
  const size_t max = static_cast<size_t>(options_.max_failures);
  Shard& shard = ShardOf(network);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.failures.find(Key(network));
  if (it == shard.failures.end()) {
    if (shard.failures.size() >= per_shard_) Sweep(shard, now);
    it = shard.failures.emplace(std::string(network), std::vector<absl::Time>()).first;
    networks_.fetch_add(1, std::memory_order_relaxed);
  }
  std::vector<absl::Time>& times = it->second;
  if (!times.empty()) now = std::max(now, times.back());
  times.erase(times.begin(), std::upper_bound(times.begin(), times.end(), now - options_.window));
  times.push_back(now);
  // Concurrent failures, each checked before the others were recorded, may pass max; only the
  // last `max` decide RetryAfter.
  if (times.size() > max) times.erase(times.begin(), times.end() - max);
}

void AuthFailureLimit::Sweep(Shard& shard, absl::Time now) {
  const size_t before = shard.failures.size();
  const absl::Time expired = now - options_.window;
  absl::erase_if(shard.failures, [expired](const auto& entry) {
    return entry.second.empty() || entry.second.back() <= expired;
  });
  if (shard.failures.size() * 4 > per_shard_ * 3) DropOldest(shard);
  networks_.fetch_sub(before - shard.failures.size(), std::memory_order_relaxed);
}

void AuthFailureLimit::DropOldest(Shard& shard) {
  // Still mostly live: forget the quarter (at least one) whose last failure is oldest.
  std::vector<std::pair<absl::Time, const std::string*>> by_last;
  by_last.reserve(shard.failures.size());
  for (const auto& [network, times] : shard.failures) by_last.emplace_back(times.back(), &network);
  const size_t drop = std::max<size_t>(1, by_last.size() / 4);
  std::nth_element(by_last.begin(), by_last.begin() + (drop - 1), by_last.end());
  std::vector<std::string> victims;
  victims.reserve(drop);
  for (size_t i = 0; i < drop; ++i) victims.push_back(*by_last[i].second);
  for (const std::string& network : victims) shard.failures.erase(network);
}

size_t AuthFailureLimit::tracked() const {
  size_t n = 0;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    n += shard.failures.size();
  }
  return n;
}

}  // namespace anyai::server
