#include "storage/secure_random.h"

#include <openssl/err.h>
#include <openssl/rand.h>

#include "absl/status/status.h"

namespace anyai::storage {

absl::StatusOr<std::string> SecureRandomBytes(size_t size) {
  std::string bytes(size, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(size)) != 1) {
    ERR_clear_error();  // OpenSSL's own text names internals
    return absl::UnavailableError("could not generate random bytes; try again later");
  }
  return bytes;
}

}  // namespace anyai::storage
