# ringside_warnings: strict warnings for every target of ours (STYLE "Build and tests").
add_library(ringside_warnings INTERFACE)
target_compile_options(ringside_warnings INTERFACE
    -Wall -Wextra -Wpedantic -Wstrict-prototypes -Wmissing-prototypes -Wshadow
    -Wwrite-strings -Wformat=2 -Wvla -Wimplicit-fallthrough -Werror)

# ringside_warnings_abi: for ipc/ and client-sdk/, where integer width is ABI.
add_library(ringside_warnings_abi INTERFACE)
target_link_libraries(ringside_warnings_abi INTERFACE ringside_warnings)
target_compile_options(ringside_warnings_abi INTERFACE -Wconversion -Wsign-conversion)
