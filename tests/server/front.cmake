# The gRPC front over real channels, in-process, with a temp RocksDB.
add_executable(grpc_server_test grpc_server_test.cc)
target_link_libraries(grpc_server_test PRIVATE anyai_server anyai_testing)
add_test(NAME server_grpc COMMAND grpc_server_test)

# The Gateway over real RocksDB: storage failure policies, nothing counted on bad input.
add_executable(gateway_test gateway_test.cc)
target_link_libraries(gateway_test PRIVATE anyai_server anyai_testing)
add_test(NAME server_gateway COMMAND gateway_test)
