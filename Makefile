# Shortcuts for the two README commands and the everyday build.
.PHONY: all demo check build clean
all: build
build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j2
demo:
	bash scripts/demo.sh
check:
	bash scripts/check.sh
clean:
	rm -rf build build-asan build-tsan build-fuzz
