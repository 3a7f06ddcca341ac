"""setup.py of the ringside package: pure Python over libringside (ctypes), no dependencies.

A setup.py without a pyproject.toml, so that `pip install ./client-sdk/python` builds with the
setuptools already installed (Debian's python3-setuptools) instead of fetching one from an index.

At build time it copies the libringside this package is installed with into ringside/_native/, so that
`import ringside` finds it without LD_LIBRARY_PATH.  The library is taken from $RINGSIDE_LIB (the
file or its directory), else the source tree's build/lib, else pkg-config's libdir of ringside.
Without any, the package still installs and looks for the library at import time
(see ringside/_lib.py)."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

try:  # setuptools >= 70.1 has its own; older ones use the wheel package's
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:
    try:
        from wheel.bdist_wheel import bdist_wheel
    except ImportError:
        bdist_wheel = None

SONAME = "libringside.so.0"
HERE = os.path.dirname(os.path.abspath(__file__))


def find_library():
    tries = []
    env = os.environ.get("RINGSIDE_LIB")
    if env:
        tries.append(os.path.join(env, SONAME) if os.path.isdir(env) else env)
    tries.append(os.path.join(HERE, "..", "..", "build", "lib", SONAME))
    try:
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "ringside"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        if libdir:
            tries.append(os.path.join(libdir, SONAME))
    except (OSError, subprocess.SubprocessError):
        pass
    for t in tries:
        if os.path.isfile(t):
            return os.path.realpath(t)
    return None


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        lib = find_library()
        dest = os.path.join(self.build_lib, "ringside", "_native")
        os.makedirs(dest, exist_ok=True)
        if lib is None:
            print("ringside: libringside not found at install time; it will be searched at "
                  "import time (RINGSIDE_LIB, ld.so)")
            return
        shutil.copyfile(lib, os.path.join(dest, SONAME))
        print("ringside: bundled %s" % lib)


cmdclass = {"build_py": BuildWithLibrary}
if bdist_wheel is not None:
    class PlatformWheel(bdist_wheel):
        """The wheel holds a native library: tag it for this platform (py3-none-linux_x86_64,
        say), not py3-none-any.  The Python code itself runs on any Python 3."""

        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = PlatformWheel


setup(
    name="ringside",
    version="0.1.0",
    description="Publish an AI agent's status, tasks, progress and terminal output to the "
                "Ringside sidecar",
    python_requires=">=3.8",
    packages=["ringside"],
    package_data={"ringside": ["py.typed", "_native/*"]},
    install_requires=[],
    zip_safe=False,
    cmdclass=cmdclass,
)
