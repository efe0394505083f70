# Tests of the HTTP front (server/http.cmake), mirroring its files: the parsers and mappings
# alone (http_json, http_query, http_status, http_router), the transport with test routes over
# real sockets (http_server), every endpoint through a whole in-process Server (http_api), and
# a deterministic fuzz test of the parsers and of the socket (http_fuzz).
find_package(nlohmann_json 3 REQUIRED)

foreach(name json query status router server api fuzz)
  add_executable(http_${name}_test http_${name}_test.cc)
  target_link_libraries(http_${name}_test
    PRIVATE anyai_server anyai_testing nlohmann_json::nlohmann_json absl::synchronization)
  add_test(NAME server_http_${name} COMMAND http_${name}_test)
endforeach()
