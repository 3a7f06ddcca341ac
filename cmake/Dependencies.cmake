# Third-party libraries, found the way each one ships (STYLE "The libraries as they are").
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
pkg_check_modules(LIBJWT REQUIRED IMPORTED_TARGET libjwt)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(ZLIB REQUIRED IMPORTED_TARGET zlib)
pkg_check_modules(LIBCRYPTO REQUIRED IMPORTED_TARGET libcrypto)
pkg_check_modules(MSGPACK IMPORTED_TARGET msgpack-c)
if(NOT MSGPACK_FOUND)
    pkg_check_modules(MSGPACK REQUIRED IMPORTED_TARGET msgpack)
endif()

# libev ships no pkg-config file.
find_path(LIBEV_INCLUDE_DIR ev.h REQUIRED)
find_library(LIBEV_LIBRARY ev REQUIRED)
add_library(ringside_libev INTERFACE)
target_include_directories(ringside_libev SYSTEM INTERFACE ${LIBEV_INCLUDE_DIR})
target_link_libraries(ringside_libev INTERFACE ${LIBEV_LIBRARY})

# wslay ships a CMake config on some distributions, a .pc file on others.
find_package(wslay CONFIG QUIET)
if(TARGET wslay)
    add_library(ringside_wslay INTERFACE)
    target_link_libraries(ringside_wslay INTERFACE wslay)
else()
    pkg_check_modules(WSLAY REQUIRED IMPORTED_TARGET libwslay)
    add_library(ringside_wslay INTERFACE)
    target_link_libraries(ringside_wslay INTERFACE PkgConfig::WSLAY)
endif()

if(RINGSIDE_TESTS)
    pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
endif()
