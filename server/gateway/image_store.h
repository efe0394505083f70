// Generated images kept for their URLs: with `response_format: url`, the Gateway stores each
// image the provider drew and answers a URL on the HTTP front (kImageFilesPath + id + ".png")
// that anyone holding it may fetch, without a key, until it expires — as OpenAI's image URLs
// work. Bounded in time (ttl) and in total size (max_bytes, the oldest images leaving first).
// Kept in memory: the images are lost on a restart (README "Image URLs").
//
//   ImageStore store({.ttl = absl::Hours(1), .max_bytes = 256 << 20, .clock = clock});
//   absl::StatusOr<std::string> id = store.Put(png);  // 32 hex characters, 128 random bits
//   absl::StatusOr<ImageStore::Image> image = store.Get(*id);
//
// Thread safety: thread-safe; one mutex guards the index, the bytes are shared immutably.
#ifndef ANYAI_SERVER_GATEWAY_IMAGE_STORE_H_
#define ANYAI_SERVER_GATEWAY_IMAGE_STORE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace anyai::server {

// The HTTP path under which stored images are served: kImageFilesPath + "<id>.png".
inline constexpr char kImageFilesPath[] = "/v1/images/files/";

// The base of image URLs for a caller that reached us as `authority` (an HTTP Host header or a
// gRPC :authority: HOST or HOST:PORT): "http://HOST[:PORT]", with `port` instead of the
// authority's own when given (gRPC callers reach the HTTP front on another port). "" (URLs
// relative to the front) when the authority is not a valid HOST[:PORT].
std::string ImageBaseUrl(std::string_view authority, std::optional<int> port = std::nullopt);

class ImageStore {
 public:
  struct Options {
    absl::Duration ttl = absl::Hours(1);
    int64_t max_bytes = int64_t{256} << 20;
    std::function<absl::Time()> clock = [] { return absl::Now(); };
  };

  struct Image {
    std::shared_ptr<const std::string> png;
    absl::Duration ttl_left;  // until the URL stops working
  };

  explicit ImageStore(Options options);

  // Stores `png` and returns its id. RESOURCE_EXHAUSTED when the image alone is larger than
  // max_bytes; UNAVAILABLE when no random id could be drawn.
  absl::StatusOr<std::string> Put(std::string png) ABSL_LOCKS_EXCLUDED(mu_);

  // The image stored under `id`, or NOT_FOUND when there is none or it has expired.
  absl::StatusOr<Image> Get(std::string_view id) ABSL_LOCKS_EXCLUDED(mu_);

  // Frees the images that have expired (the Server's evictor calls it; a Put does too).
  void DropExpired() ABSL_LOCKS_EXCLUDED(mu_);

  // Bytes held now (expired images included until DropExpired or a Put frees them).
  int64_t bytes() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Entry {
    std::shared_ptr<const std::string> png;
    absl::Time expires;
  };

  // Drops expired images, then the oldest until `incoming` more bytes fit.
  void MakeRoom(int64_t incoming, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> images_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> oldest_first_ ABSL_GUARDED_BY(mu_);  // every id of images_
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_IMAGE_STORE_H_
