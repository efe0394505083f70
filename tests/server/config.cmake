# Tests for server/config.cc. The example configs under deploy/config/ are loaded from the
# source tree, so that they cannot drift from what the loader accepts.
add_executable(config_test config_test.cc)
target_link_libraries(config_test PRIVATE anyai_config anyai_testing)
target_compile_definitions(config_test PRIVATE ANYAI_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_test(NAME server_config COMMAND config_test)
