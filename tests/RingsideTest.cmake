# ringside_unit_test(NAME SOURCES... LIBS ... LABELS ... [TIMEOUT s])
# One cmocka executable per unit file; registered with ctest, labelled, with a timeout.
function(ringside_unit_test name)
    cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
    if(NOT T_TIMEOUT)
        set(T_TIMEOUT 60)
    endif()
    add_executable(${name} ${T_SOURCES})
    target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA ringside_warnings)
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES LABELS "unit;${T_LABELS}" TIMEOUT ${T_TIMEOUT}
        ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1;UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
endfunction()

# Python for tests that need Debian's python3-* packages (see the brief: /usr/bin/python3).
set(RINGSIDE_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with Debian's python3-* packages")
set(RINGSIDE_TEST_ENV
    "RINGSIDE_BIN=${CMAKE_BINARY_DIR}/bin"
    "RINGSIDE_LIB=${CMAKE_BINARY_DIR}/lib"
    "RINGSIDE_SRC=${CMAKE_SOURCE_DIR}"
    "PYTHONDONTWRITEBYTECODE=1"
    "RINGSIDE_SANITIZE=${RINGSIDE_SANITIZE}"
    "ASAN_OPTIONS=detect_leaks=1"
    "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")

# ringside_fuzz_target(NAME SOURCES ... LIBS ... CORPUS dir [LABELS ...])
# With RINGSIDE_FUZZ=ON (clang): a libFuzzer binary; ctest runs it for $FUZZ_SECONDS (default 15)
# on a scratch copy of the seed corpus.  Otherwise: the same harness linked with a replay main()
# that feeds every seed file once (so the harness builds and its seeds pass in every build).
set(RINGSIDE_FUZZ_REPLAY_MAIN ${CMAKE_CURRENT_LIST_DIR}/fuzz/replay_main.c)
function(ringside_fuzz_target name)
    cmake_parse_arguments(F "" "CORPUS" "SOURCES;LIBS;LABELS" ${ARGN})
    if(RINGSIDE_FUZZ)
        add_executable(${name} ${F_SOURCES})
        target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
        target_link_options(${name} PRIVATE -fsanitize=fuzzer)
        target_link_libraries(${name} PRIVATE ${F_LIBS} ringside_warnings)
        add_test(NAME ${name}
                 COMMAND ${CMAKE_COMMAND} -E env bash -c
                     "rm -rf '$<TARGET_FILE:${name}>.corpus' && cp -r '${F_CORPUS}' '$<TARGET_FILE:${name}>.corpus' && exec '$<TARGET_FILE:${name}>' -max_total_time=\${FUZZ_SECONDS:-15} -timeout=10 -rss_limit_mb=2048 '$<TARGET_FILE:${name}>.corpus'")
        set_tests_properties(${name} PROPERTIES LABELS "fuzz;${F_LABELS}" TIMEOUT 900)
    else()
        add_executable(${name} ${F_SOURCES} ${RINGSIDE_FUZZ_REPLAY_MAIN})
        target_link_libraries(${name} PRIVATE ${F_LIBS} ringside_warnings)
        add_test(NAME ${name} COMMAND ${name} ${F_CORPUS})
        set_tests_properties(${name} PROPERTIES LABELS "fuzz;fuzz-replay;${F_LABELS}" TIMEOUT 120)
    endif()
endfunction()
