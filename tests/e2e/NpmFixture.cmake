# Defines, once per build tree, the ctest fixture `npm_e2e_deps` that installs tests/e2e/node_modules
# (playwright-core, ws) from package-lock.json when it is missing. Used by tests/js and tests/e2e.
get_property(_done GLOBAL PROPERTY RINGSIDE_NPM_E2E_FIXTURE)
if(NOT _done)
    set_property(GLOBAL PROPERTY RINGSIDE_NPM_E2E_FIXTURE ON)
    add_test(NAME npm_e2e_deps COMMAND ${CMAKE_COMMAND} -P ${CMAKE_SOURCE_DIR}/tests/e2e/npm_deps.cmake)
    set_tests_properties(npm_e2e_deps PROPERTIES LABELS "js;e2e" TIMEOUT 300 FIXTURES_SETUP npm_e2e_deps)
endif()
