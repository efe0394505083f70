# anyai_config: the ServerConfig's compiled-in defaults, loading a config file (textproto or
# JSON) over them, flag and environment overrides, and validation that names the bad field
# (SPEC §8). The default model catalogue and endpoint model lists come from anyai_domain
# (catalogue.h), so that the config and the catalogue cannot disagree.
add_library(anyai_config config.cc)
target_include_directories(anyai_config PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(anyai_config
  PUBLIC anyai_proto anyai_quota anyai_domain absl::status absl::statusor absl::strings
         absl::time)
