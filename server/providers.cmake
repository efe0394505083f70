# anyai_providers: the Provider interface (provider.h) and the builtin provider, the offline
# stand-in for models (SPEC §5). No gRPC or HTTP: the fronts call it through provider.h.
add_library(anyai_providers builtin_provider.cc token_count.cc)
target_include_directories(anyai_providers PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(anyai_providers
  PUBLIC anyai_proto anyai_images absl::status absl::statusor absl::strings absl::time
         absl::function_ref)
