# Benchmark programs (make bench); built with the daemon, not run by ctest.
add_executable(bench-sink ${CMAKE_SOURCE_DIR}/bench/sink.c)
target_link_libraries(bench-sink PRIVATE kk_core)
