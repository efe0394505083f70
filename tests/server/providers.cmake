# Tests for server/builtin_provider.cc and server/token_count.cc.
add_executable(builtin_provider_test builtin_provider_test.cc)
target_link_libraries(builtin_provider_test PRIVATE anyai_providers anyai_testing)
add_test(NAME server_builtin_provider COMMAND builtin_provider_test)
