# Benchmark programs (make bench); built with the daemon, not run by ctest.
add_executable(bench-sink ${CMAKE_SOURCE_DIR}/bench/sink.c)
target_link_libraries(bench-sink PRIVATE kk_core)
add_executable(bench-pipeline ${CMAKE_SOURCE_DIR}/bench/pipeline.c)
target_link_libraries(bench-pipeline PRIVATE kk_core)
add_executable(bench-load ${CMAKE_SOURCE_DIR}/bench/load.c)
target_link_libraries(bench-load PRIVATE kk_core)
