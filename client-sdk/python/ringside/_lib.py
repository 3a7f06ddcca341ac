"""Locating and loading libringside, and declaring its C prototypes (ctypes, no compiler).

Search order (the first that loads wins):
  1. $RINGSIDE_LIB: the library file itself, or the directory that holds it;
  2. the copy installed inside this package (``ringside/_native/``, made by ``pip install``
     from the library it was built with);
  3. the source tree's ``build/lib`` (the package used from a Ringside checkout);
  4. ``lib/`` under this interpreter's prefix and /usr/local (``cmake --install``);
  5. the dynamic loader's own search by soname (LD_LIBRARY_PATH, ld.so.cache);
  6. ``ctypes.util.find_library("ringside")`` (asked last: it runs ldconfig or a compiler).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Iterator, List, Optional

SONAME = "libringside.so.0"

_here = os.path.dirname(os.path.abspath(__file__))


class RsOptions(ctypes.Structure):
    """Mirror of struct rs_options (ringside.h 0.1): every field, since rs_options_init() writes
    the whole struct as the library knows it."""
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("shm_dir", ctypes.c_char_p),
        ("agent_id", ctypes.c_char_p),
        ("project_id", ctypes.c_char_p),
        ("owner", ctypes.c_char_p),
        ("term_ring_bytes", ctypes.c_uint32),
        ("max_tasks", ctypes.c_uint32),
        ("term_rings", ctypes.c_uint32),
        ("log_slots", ctypes.c_uint32),
    ]


class RsStats(ctypes.Structure):
    """Mirror of struct rs_stats (ringside.h 0.1)."""
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("events_published", ctypes.c_uint64),
        ("events_dropped", ctypes.c_uint64),
        ("progress_updates", ctypes.c_uint64),
        ("term_bytes_written", ctypes.c_uint64),
        ("term_bytes_dropped", ctypes.c_uint64),
        ("wakeups", ctypes.c_uint64),
    ]


def candidates() -> List[str]:
    """The paths tried, in order (for error messages and tests)."""
    return list(_candidates(True))


def _candidates(search: bool) -> Iterator[str]:
    """The paths to try, lazily: ctypes.util.find_library() runs ldconfig (or gcc/ld) in a child
    process, so it is asked only when every path before it failed (search=True)."""
    out: List[str] = []
    env = os.environ.get("RINGSIDE_LIB")
    if env:
        out.append(os.path.join(env, SONAME) if os.path.isdir(env) else env)
    out.append(os.path.join(_here, "_native", SONAME))
    out.append(os.path.normpath(os.path.join(_here, "..", "..", "..", "build", "lib", SONAME)))
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, "/usr/local")):
        out.append(os.path.join(prefix, "lib", SONAME))
    out.append(SONAME)  # the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache)
    yield from out
    if search:
        found = ctypes.util.find_library("ringside")
        if found:
            yield found


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    c_int, c_char_p, c_void_p = ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p
    u32 = ctypes.c_uint32
    protos = {
        "rs_options_init": (None, [ctypes.POINTER(RsOptions)]),
        "rs_open": (c_int, [ctypes.POINTER(RsOptions), ctypes.POINTER(c_void_p)]),
        "rs_set_status": (c_int, [c_void_p, c_int, c_char_p]),
        "rs_task_start": (c_int, [c_void_p, c_char_p, c_char_p]),
        "rs_progress": (c_int, [c_void_p, c_char_p, u32, u32, c_char_p]),
        "rs_write": (c_int, [c_void_p, c_char_p, c_int, c_char_p, ctypes.c_size_t]),
        "rs_task_end": (c_int, [c_void_p, c_char_p, c_int, c_int]),
        "rs_stats_get": (c_int, [c_void_p, ctypes.POINTER(RsStats)]),
        "rs_close": (c_int, [c_void_p]),
        "rs_strerror": (c_char_p, [c_int]),
        "rs_status_name": (c_char_p, [c_int]),
        "rs_version": (c_char_p, []),
    }
    for name, (res, args) in protos.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib


_lib: Optional[ctypes.CDLL] = None
_path: Optional[str] = None


def load() -> ctypes.CDLL:
    """Returns the loaded library (loaded once per process); raises OSError naming every path
    tried when none loads."""
    global _lib, _path
    if _lib is not None:
        return _lib
    errors = []
    for path in _candidates(True):
        if os.path.sep in path and not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            errors.append("%s: %s" % (path, e))
            continue
        _lib, _path = _declare(lib), path
        return _lib
    raise OSError("libringside not found (tried: %s); set RINGSIDE_LIB to the library file or its "
                  "directory, or reinstall the package from a tree where it is built%s"
                  % (", ".join(candidates()), "; " + "; ".join(errors) if errors else ""))


def path() -> Optional[str]:
    """The path the library was loaded from (None before load())."""
    return _path
