// SHA-256 (FIPS 180-4) and a constant-time comparison, for hashing API keys and checking
// secrets, both from OpenSSL's libcrypto: the key store keeps only Sha256(key), never the key,
// and secrets are compared with ConstantTimeEquals so that the time a comparison takes says
// nothing about the secret — neither where two values differ nor how long the secret is.
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

// Whether libcrypto has SHA-256 (a broken OpenSSL configuration may not): checked once at start
// by the key store, so that such a process refuses to start instead of failing later.
bool Sha256Available();

// The SHA-256 digest of `data`, as kSha256Size raw bytes. Once Sha256Available(), libcrypto fails
// to hash only when it cannot allocate; the process then aborts with a message, as it does when
// `new` fails.
std::string Sha256(std::string_view data);

// Whether `a` and `b` hold the same bytes. It compares the SHA-256 digests of both with
// CRYPTO_memcmp, so it takes the time of hashing `a` and `b` plus a fixed 32-byte comparison:
// the time depends on each input's own length, never on where the inputs differ or on whether
// their lengths match. Comparing an attacker's guess with a secret therefore tells them nothing
// new about the secret, its length included: hashing the secret takes the same time on every
// attempt. Costs two SHA-256s (well under a microsecond for short inputs).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_SHA256_H_
