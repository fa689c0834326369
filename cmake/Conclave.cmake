# Helpers shared by every module's CMakeLists.txt.

# conclave_library(NAME SOURCES... DEPS...)
function(conclave_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE ${CONCLAVE_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# conclave_test(NAME SOURCES... DEPS... [TIMEOUT seconds])
# One gtest binary; each TEST becomes its own ctest entry so ctest -j spreads them.
function(conclave_test name)
  if(NOT CONCLAVE_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${CONCLAVE_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  gtest_discover_tests(${name}
    DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
endfunction()

# conclave_fuzz(NAME DEPS...)
# A libFuzzer target NAME from NAME.cc beside the calling CMakeLists.txt. It is
# built only in the fuzz tree (`make fuzz-build`: clang++, -DCONCLAVE_FUZZ=ON,
# the whole tree instrumented for coverage); the Debug tree registers a ctest
# entry that runs that binary for CONCLAVE_FUZZ_SECONDS over the committed
# seed corpus fuzz_corpus/NAME. A missing binary fails the entry: it means
# the fuzz tree was not built. Add NAME to FUZZ_TARGETS in the Makefile.
set(CONCLAVE_FUZZ_DIR "${PROJECT_SOURCE_DIR}/build/fuzz" CACHE PATH
    "Build tree holding the libFuzzer binaries that ctest runs")
set(CONCLAVE_FUZZ_SECONDS 15 CACHE STRING "How long ctest runs each fuzz target")

function(conclave_fuzz name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(RELATIVE_PATH rel "${PROJECT_SOURCE_DIR}" "${CMAKE_CURRENT_SOURCE_DIR}")
  if(CONCLAVE_FUZZ)
    add_executable(${name} ${name}.cc)
    target_compile_options(${name} PRIVATE ${CONCLAVE_WARNINGS} -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  endif()
  if(CONCLAVE_TESTS)
    add_test(NAME ${name}
      COMMAND ${CMAKE_COMMAND}
        -DFUZZ_BINARY=${CONCLAVE_FUZZ_DIR}/${rel}/${name}
        -DCORPUS=${CMAKE_CURRENT_SOURCE_DIR}/fuzz_corpus/${name}
        -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/fuzz_work/${name}
        -DSECONDS=${CONCLAVE_FUZZ_SECONDS}
        -P ${PROJECT_SOURCE_DIR}/cmake/run_fuzz_test.cmake)
    set_tests_properties(${name} PROPERTIES TIMEOUT 120 LABELS fuzz)
  endif()
endfunction()
