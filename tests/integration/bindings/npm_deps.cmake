# npm_deps.cmake — make sure client-sdk/node/node_modules matches its package-lock.json (cmake -P,
# run by ctest as the fixture `npm_bindings_deps`): koffi (prebuilt, no node-gyp) and ws (tests).
cmake_minimum_required(VERSION 3.25)
get_filename_component(dir "${CMAKE_CURRENT_LIST_DIR}/../../../client-sdk/node" ABSOLUTE)
if(EXISTS "${dir}/node_modules/koffi/package.json" AND EXISTS "${dir}/node_modules/ws/package.json")
    return()
endif()
find_program(NPM npm REQUIRED)
execute_process(COMMAND "${NPM}" ci --no-audit --no-fund --loglevel=error
    WORKING_DIRECTORY "${dir}" RESULT_VARIABLE rc TIMEOUT 240)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "npm ci in ${dir} failed: ${rc}")
endif()
