# The OpenAI-compatible HTTP front (SPEC §4): the Boost.Beast transport (http_server), routing
# (http_router), the endpoints (http_api), request mapping onto the proto requests the gRPC
# front uses too (http_json for bodies, http_query for query strings) and OpenAI's error bodies
# and headers (http_status). The endpoints call the Gateway and server.cc starts the server
# next to gRPC, so these sources belong to anyai_server; Beast and nlohmann::json stay private
# to it (no public header of the front includes them).
find_package(Boost 1.74 REQUIRED)
find_package(nlohmann_json 3 REQUIRED)

target_sources(anyai_server PRIVATE
  http_api.cc
  http_json.cc
  http_query.cc
  http_router.cc
  http_server.cc
  http_status.cc)
target_link_libraries(anyai_server
  PRIVATE Boost::headers nlohmann_json::nlohmann_json absl::synchronization)
