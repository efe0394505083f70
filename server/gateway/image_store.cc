#include "server/gateway/image_store.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/net/host_port.h"
#include "storage/secure_random.h"

namespace anyai::server {

ImageStore::ImageStore(Options options) : options_(std::move(options)) {}

absl::StatusOr<std::string> ImageStore::Put(std::string png) {
  const int64_t size = static_cast<int64_t>(png.size());
  if (size > options_.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("the image (", size,
                                                     " bytes) is larger than the image store (",
                                                     options_.max_bytes, " bytes)"));
  }
  auto bytes = std::make_shared<const std::string>(std::move(png));
  const absl::Time now = options_.clock();
  for (;;) {  // a 128-bit id repeats with probability 2^-128; never overwrite one anyway
    absl::StatusOr<std::string> random = storage::SecureRandomBytes(16);
    if (!random.ok()) return random.status();
    std::string id = absl::BytesToHexString(*random);
    absl::MutexLock lock(&mu_);
    if (images_.contains(id)) continue;
    MakeRoom(size, now);
    images_.emplace(id, Entry{bytes, now + options_.ttl});
    oldest_first_.push_back(id);
    bytes_ += size;
    return id;
  }
}

absl::StatusOr<ImageStore::Image> ImageStore::Get(std::string_view id) {
  const absl::Time now = options_.clock();
  absl::MutexLock lock(&mu_);
  auto it = images_.find(absl::string_view(id.data(), id.size()));
  if (it == images_.end() || it->second.expires <= now) {
    return absl::NotFoundError("no such image: it never existed or its URL has expired");
  }
  return Image{it->second.png, it->second.expires - now};
}

void ImageStore::DropExpired() {
  const absl::Time now = options_.clock();
  absl::MutexLock lock(&mu_);
  MakeRoom(0, now);
}

int64_t ImageStore::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

void ImageStore::MakeRoom(int64_t incoming, absl::Time now) {
  // Every image lives as long as the others, so the oldest also expires first.
  while (!oldest_first_.empty()) {
    auto it = images_.find(oldest_first_.front());
    if (it->second.expires > now && bytes_ + incoming <= options_.max_bytes) break;
    bytes_ -= static_cast<int64_t>(it->second.png->size());
    images_.erase(it);
    oldest_first_.pop_front();
  }
}

std::string ImageBaseUrl(std::string_view authority, std::optional<int> port) {
  if (absl::StatusOr<net::HostPort> hp = net::HostPort::Parse(authority); hp.ok()) {
    return absl::StrCat("http://", net::HostPort{hp->host, port.value_or(hp->port)}.ToString());
  }
  if (absl::StatusOr<net::Host> host = net::Host::Parse(authority); host.ok()) {
    return port.has_value() ? absl::StrCat("http://", net::HostPort{*host, *port}.ToString())
                            : absl::StrCat("http://", host->ToString());
  }
  return "";
}

}  // namespace anyai::server
