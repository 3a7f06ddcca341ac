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
    "ASAN_OPTIONS=detect_leaks=1"
    "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
