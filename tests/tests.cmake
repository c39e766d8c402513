# Unit tests: every tests/unit/test_*.c is one cmocka program.
# End-to-end tests: every tests/e2e/*.test.js is one node:test file, run
# against the binary of this build (KK_BIN) with the rig in tests/rig.
# AWS_EC2_METADATA_DISABLED=true everywhere: a test without keys never asks
# 169.254.169.254 (the credential tests point IMDS at their stand-in).
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
# promtool: extracted by `make deps` into build-tools/ (see Makefile).
find_program(KK_PROMTOOL promtool HINTS ${CMAKE_SOURCE_DIR}/build-tools NO_DEFAULT_PATH)
if(NOT KK_PROMTOOL)
  find_program(KK_PROMTOOL promtool REQUIRED)
endif()

set(KK_TEST_LAYER_test_kubemq_client kk_kubemq)
set(KK_TEST_LAYER_test_api kk_api PkgConfig::CURL)
set(KK_TEST_LAYER_test_filewatch kk_base)
set(KK_TEST_LAYER_test_envelope kk_message)
set(KK_TEST_LAYER_test_metrics kk_base)
set(KK_TEST_LAYER_test_binding_metrics kk_binding)
set(KK_TEST_LAYER_test_kubemq_grpc kk_kubemq)
set(KK_TEST_LAYER_test_resolve kk_base)
set(KK_TEST_LAYER_test_tls kk_base)
set(KK_TEST_LAYER_test_aws_h1_answer kk_aws)

file(GLOB KK_UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src ${KK_UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  # A test of one layer links only that layer (and what is below it).
  if(DEFINED KK_TEST_LAYER_${name})
    target_link_libraries(${name} PRIVATE ${KK_TEST_LAYER_${name}} PkgConfig::CMOCKA)
  else()
    target_link_libraries(${name} PRIVATE kk_core PkgConfig::CMOCKA)
  endif()
  target_compile_definitions(${name} PRIVATE
    KK_SOURCE_DIR="${CMAKE_SOURCE_DIR}" KK_RIG_DIR="${CMAKE_SOURCE_DIR}/tests/rig"
    KK_PROMTOOL="${KK_PROMTOOL}")
  add_test(NAME unit/${name} COMMAND ${name})
  set_tests_properties(unit/${name} PROPERTIES LABELS unit TIMEOUT 120
    ENVIRONMENT "AWS_EC2_METADATA_DISABLED=true;ASAN_OPTIONS=detect_leaks=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1;LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp")
endforeach()

find_program(NODE node)
file(GLOB KK_E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/e2e/*.test.js)
foreach(src ${KK_E2E_TESTS})
  get_filename_component(name ${src} NAME)
  string(REPLACE ".test.js" "" name ${name})
  add_test(NAME e2e/${name} COMMAND ${NODE} --test --test-reporter=spec ${src})
  set_tests_properties(e2e/${name} PROPERTIES LABELS e2e TIMEOUT 600
    ENVIRONMENT "AWS_EC2_METADATA_DISABLED=true;KK_BIN=$<TARGET_FILE:kubemq-kinesis>;KK_SOURCE_DIR=${CMAKE_SOURCE_DIR};NODE_NO_WARNINGS=1;ASAN_OPTIONS=detect_leaks=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1;LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp")
endforeach()
