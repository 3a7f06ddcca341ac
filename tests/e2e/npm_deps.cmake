# npm_deps.cmake — make sure tests/e2e/node_modules matches package-lock.json (cmake -P, run by ctest as
# the fixture `npm_e2e_deps`). Never downloads a browser: playwright-core uses Debian's chromium.
cmake_minimum_required(VERSION 3.25)
get_filename_component(dir "${CMAKE_CURRENT_LIST_DIR}" ABSOLUTE)
if(EXISTS "${dir}/node_modules/playwright-core/package.json" AND EXISTS "${dir}/node_modules/ws/package.json")
    return()
endif()
find_program(NPM npm REQUIRED)
set(ENV{PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD} 1)
execute_process(COMMAND "${NPM}" ci --no-audit --no-fund --loglevel=error
    WORKING_DIRECTORY "${dir}" RESULT_VARIABLE rc TIMEOUT 240)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "npm ci in ${dir} failed: ${rc}")
endif()
