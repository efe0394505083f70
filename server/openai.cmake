# anyai_openai: the openai provider (SPEC §5) and what it stands on — the libcurl client for
# upstream APIs (upstream_http), the SSE parser for streamed answers, the SSRF guard for
# user-supplied URLs — and the ProviderRegistry that builds every provider a config defines
# (builtin and openai), for the server to route to.
find_package(CURL REQUIRED)
find_package(nlohmann_json 3 REQUIRED)

add_library(anyai_openai
  openai_provider.cc
  provider_registry.cc
  sse_parser.cc
  ssrf_guard.cc
  upstream_http.cc)
target_include_directories(anyai_openai PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(anyai_openai
  PUBLIC anyai_providers anyai_domain anyai_proto absl::status absl::statusor absl::strings
         absl::time absl::synchronization absl::flat_hash_map absl::function_ref
  PRIVATE CURL::libcurl nlohmann_json::nlohmann_json absl::random_random absl::flat_hash_set)
