// SHA-256 (FIPS 180-4) and a constant-time comparison, for hashing API keys: the key store keeps
// only Sha256(key), never the key, and compares digests with ConstantTimeEquals so that the
// time a comparison takes says nothing about where two digests differ.
//
//   std::string digest = anyai::storage::Sha256("sk-anyai-...");  // 32 raw bytes
//   std::string hex = absl::BytesToHexString(digest);              // 64 hex characters
//
// Thread safety: pure functions of their arguments; safe from any number of threads.
#ifndef ANYAI_STORAGE_SHA256_H_
#define ANYAI_STORAGE_SHA256_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace anyai::storage {

inline constexpr size_t kSha256Size = 32;

// The SHA-256 digest of `data`, as kSha256Size raw bytes.
std::string Sha256(std::string_view data);

// Whether `a` and `b` hold the same bytes. For equal lengths the time taken depends only on the
// length, not on the contents; a length mismatch returns early (lengths are not secret here:
// every digest is kSha256Size bytes).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_SHA256_H_
