# Tests of anyai_domain (server/domain.cmake): catalogue, validation and errors, plus
# validation_fuzz, a deterministic randomized test (no libFuzzer needed) that feeds random
# bytes and random field values through validation and UTF-8 counting.
foreach(name catalogue validation errors)
  add_executable(server_${name}_test ${name}_test.cc)
  target_link_libraries(server_${name}_test PRIVATE anyai_domain anyai_testing)
  add_test(NAME server_${name} COMMAND server_${name}_test)
endforeach()

add_executable(server_validation_fuzz validation_fuzz.cc)
target_link_libraries(server_validation_fuzz PRIVATE anyai_domain anyai_testing)
add_test(NAME server_validation_fuzz COMMAND server_validation_fuzz)
