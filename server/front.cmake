# anyai_server: who calls (client_address), the shared path of every request (gateway), the
# gRPC edge (grpc_status, anyai_service, admin_service) and the assembled Server. Then the
# two executables of SPEC §8.
add_library(anyai_server
  admin_service.cc
  anyai_service.cc
  client_address.cc
  gateway.cc
  grpc_metrics.cc
  grpc_status.cc
  metered_provider.cc
  metrics.cc
  server.cc)
target_compile_definitions(anyai_server PRIVATE ANYAI_VERSION="${PROJECT_VERSION}")
target_include_directories(anyai_server PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(anyai_server
  PUBLIC anyai_domain anyai_providers anyai_openai anyai_config anyai_storage anyai_quota anyai_proto
         gRPC::grpc++ absl::flat_hash_map absl::status absl::statusor absl::time
         prometheus-cpp::core
  PRIVATE gRPC::grpc++_reflection absl::strings)

add_executable(anyai-server main.cc)
target_link_libraries(anyai-server PRIVATE anyai_server absl::flags absl::flags_parse
  absl::flags_usage)

add_executable(anyai-admin admin_main.cc)
target_link_libraries(anyai-admin PRIVATE anyai_proto gRPC::grpc++ absl::flags absl::flags_parse
  absl::flags_usage absl::strings absl::str_format absl::time)
