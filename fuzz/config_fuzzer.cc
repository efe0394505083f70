// Fuzzes the config loader (server/config/config.h) as anyai-server runs it on a --config file:
// the input is parsed as textproto and as JSON, each merged over the defaults, and what parses
// goes through ValidateConfig, PlanTableFromConfig and CatalogueFromConfig. Every outcome is
// fine but a crash, a sanitizer report, or a config that validates but whose plans or
// catalogue then fail to build (ValidateConfig promises both).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/config/config.h"

namespace {

void Check(bool ok, const char* what, const absl::Status& status) {
  if (ok) return;
  std::cerr << what << ": " << status << "\n";
  std::abort();
}

void Load(absl::string_view text, anyai::server::ConfigFormat format) {
  absl::StatusOr<anyai::v1::ServerConfig> config = anyai::server::ParseConfig(text, format, "fuzz");
  if (!config.ok()) return;
  const absl::Status valid = anyai::server::ValidateConfig(*config);
  absl::StatusOr<anyai::quota::PlanTable> plans = anyai::server::PlanTableFromConfig(*config);
  absl::StatusOr<anyai::server::Catalogue> catalogue = anyai::server::CatalogueFromConfig(*config);
  if (valid.ok()) {
    Check(plans.ok(), "a valid config's plans do not build", plans.status());
    Check(catalogue.ok(), "a valid config's catalogue does not build", catalogue.status());
    (void)anyai::server::RedactedConfigText(*config);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  Load(text, anyai::server::ConfigFormat::kTextproto);
  Load(text, anyai::server::ConfigFormat::kJson);
  return 0;
}
