# Tests of anyai_openai (server/openai.cmake): the openai provider against FakeUpstream (a
# scripted OpenAI-compatible server on a local socket), the SSE parser, the SSRF guard and the
# ProviderRegistry.
find_package(nlohmann_json 3 REQUIRED)

add_library(anyai_fake_upstream STATIC fake_upstream.cc)
target_include_directories(anyai_fake_upstream PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(anyai_fake_upstream
  PUBLIC absl::synchronization absl::time absl::strings Threads::Threads)

foreach(name openai_provider provider_registry sse_parser ssrf_guard)
  add_executable(server_${name}_test ${name}_test.cc)
  target_link_libraries(server_${name}_test
    PRIVATE anyai_openai anyai_fake_upstream anyai_testing nlohmann_json::nlohmann_json)
  add_test(NAME server_${name} COMMAND server_${name}_test)
endforeach()
