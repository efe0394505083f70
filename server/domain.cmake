# anyai_domain: what every front shares before and after the engine decides — the model
# catalogue and endpoint model lists (catalogue.h), request validation (validation.h, with
# UTF-8 code point counting in text.h) and the one error vocabulary with google.rpc details
# (errors.h). No gRPC server, no HTTP: the fronts link it and translate at their edge.
add_library(anyai_domain
  catalogue.cc
  errors.cc
  text.cc
  validation.cc)
target_include_directories(anyai_domain PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(anyai_domain
  PUBLIC anyai_proto anyai_quota absl::status absl::statusor absl::strings absl::time
         absl::flat_hash_map absl::cord
  PRIVATE absl::str_format)
