// Unguessable bytes, from OpenSSL's CSPRNG (seeded and reseeded from the operating system): the
// random part of API keys and of the URLs of generated images.
//
//   absl::StatusOr<std::string> bytes = anyai::storage::SecureRandomBytes(16);
//
// Thread safety: thread-safe (OpenSSL's generator is).
#ifndef ANYAI_STORAGE_SECURE_RANDOM_H_
#define ANYAI_STORAGE_SECURE_RANDOM_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace anyai::storage {

// `size` random bytes. UNAVAILABLE when the generator fails (no entropy yet, or a broken OpenSSL
// configuration), with a message that names no internals: it may reach a client.
absl::StatusOr<std::string> SecureRandomBytes(size_t size);

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_SECURE_RANDOM_H_
