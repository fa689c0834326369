# Runs one libFuzzer binary for a few seconds over its committed seed corpus;
# ctest calls this with FUZZ_BINARY, CORPUS, WORK_DIR and SECONDS set.
#
# New inputs go to a scratch corpus under WORK_DIR, never into the committed
# seeds. A crash leaves its input in WORK_DIR/artifacts. A missing binary is a
# failure, not a skip: it means the fuzz tree (`make fuzz-build`) was not built.
if(NOT EXISTS "${FUZZ_BINARY}")
  message(FATAL_ERROR "fuzz binary missing: ${FUZZ_BINARY}\n"
                      "Build it with `make fuzz-build` (clang++, -DCONCLAVE_FUZZ=ON).")
endif()
if(NOT IS_DIRECTORY "${CORPUS}")
  message(FATAL_ERROR "seed corpus missing: ${CORPUS}")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}/corpus" "${WORK_DIR}/artifacts")
execute_process(
  COMMAND "${FUZZ_BINARY}"
          -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix=${WORK_DIR}/artifacts/
          "${WORK_DIR}/corpus" "${CORPUS}"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZ_BINARY} failed (exit ${rc}); the input is in ${WORK_DIR}/artifacts")
endif()
