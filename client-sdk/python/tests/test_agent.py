"""The ringside package against the real libringside: every call, error mapping, context-manager
outcomes, no-sidecar behaviour, fork.  Rings are read back with the sidecar's reader (ring_dump).
"""
import logging
import os
import subprocess
import sys
import unittest

import support
from support import STATUS, ShmCase, dump, of, term_bytes

import ringside
from ringside import errors


class LibraryTest(unittest.TestCase):
    def test_version_and_strerror(self):
        self.assertEqual(ringside.version(), "0.1.0")
        self.assertEqual(ringside.strerror(-4), "ring full: event dropped and counted")

    def test_every_code_maps_to_a_typed_error(self):
        for code in range(-1, -10, -1):
            cls = errors.ERRORS[code]
            self.assertTrue(issubclass(cls, ringside.RingsideError))
            e = errors.from_code(code, "op", ringside.strerror(code))
            self.assertIsInstance(e, cls)
            self.assertEqual(e.code, code)
        self.assertTrue(issubclass(ringside.InvalidArgument, ValueError))
        self.assertTrue(issubclass(ringside.ShmUnavailable, OSError))
        self.assertTrue(issubclass(ringside.NoSuchTask, LookupError))

    def _import_in_child(self, env):
        e = {k: v for k, v in os.environ.items() if k not in ("RINGSIDE_LIB", "LD_LIBRARY_PATH")}
        e.update(support.sanitizer_env())
        e.update(env)
        code = "import ringside, ringside._lib as l; print(ringside.version(), l.path())"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=support.T,
                              env=e, cwd=os.path.join(support.SRC, "client-sdk", "python"))

    def test_ringside_lib_as_file_or_directory(self):
        so = os.path.join(support.LIB, "libringside.so.0")
        for value in (support.LIB, so):
            p = self._import_in_child({"RINGSIDE_LIB": value})
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout.decode().split(), ["0.1.0", so])

    def test_not_found_names_what_was_tried(self):
        p = self._import_in_child({"RINGSIDE_LIB": "/nonexistent/libringside.so.0"})
        if p.returncode == 0:
            self.skipTest("a libringside is installed system-wide: %s" % p.stdout)
        self.assertIn(b"libringside not found", p.stderr)
        self.assertIn(b"/nonexistent/libringside.so.0", p.stderr)
        self.assertIn(b"RINGSIDE_LIB", p.stderr)


class AgentTest(ShmCase):
    def agent(self, **kw):
        kw.setdefault("shm_dir", self.shm)
        return ringside.Agent("py-1", "proj", **kw)

    def test_every_call(self):
        with self.agent(owner="alice") as a:
            self.assertTrue(a.connected)
            for name in STATUS:
                self.assertTrue(a.status(name, "detail " + name))
            self.assertTrue(a.status(ringside.Status.WORKING, "é" * 200))  # truncated on UTF-8
            t = a.task("t-1", "Build the thing")
            self.assertTrue(t.progress(3, 10, "compiling"))
            self.assertTrue(t.write(b"\x1b[32mok\x1b[0m\r\n"))
            self.assertTrue(t.write("warn ✓\r\n", "stderr"))
            big = bytes(range(256)) * 1024  # 256 KiB: split into pieces below half a ring
            self.assertTrue(t.write(big))
            self.assertTrue(t.write(b""))
            self.assertTrue(t.write(bytearray(b"")))
            self.assertTrue(t.end("failed", 7))
            st = a.stats()
            self.assertEqual(st["term_bytes_written"], len(b"\x1b[32mok\x1b[0m\r\n") + len("warn ✓\r\n".encode()) + len(big))
            self.assertEqual(st["progress_updates"], 1)
        self.assertFalse(a.connected)
        a.close()  # idempotent
        recs = dump(self.shm)
        ring = of(recs, "ring")[0]
        self.assertEqual((ring["agent"], ring["project"], ring["owner"], ring["closed_cleanly"]),
                         ("py-1", "proj", "alice", 1))
        sts = of(recs, "status")
        self.assertEqual([s["status"] for s in sts], list(STATUS.values()) + [1])
        self.assertEqual(len(sts[-1]["detail"].encode()), 254)
        self.assertEqual(of(recs, "task_start")[0]["title"], "Build the thing")
        self.assertEqual([(p["step"], p["total"], p["message"]) for p in of(recs, "progress")],
                         [(3, 10, "compiling")])
        self.assertEqual(term_bytes(recs, "t-1", 1), b"\x1b[32mok\x1b[0m\r\n" + big)
        self.assertEqual(term_bytes(recs, "t-1", 2), "warn ✓\r\n".encode())
        self.assertEqual([(e["outcome"], e["exit_code"]) for e in of(recs, "task_end")], [(3, 7)])

    def test_caller_mistakes_raise_even_when_not_strict(self):
        with self.agent() as a:
            with self.assertRaises(ringside.InvalidArgument):
                ringside.Agent("bad id", "proj", shm_dir=self.shm)
            with self.assertRaises(ringside.InvalidArgument):
                a.status("busy")
            with self.assertRaises(ringside.InvalidArgument):
                a.task("x" * 64)
            t = a.task("t1")
            with self.assertRaises(ringside.TaskExists):
                a.task("t1")
            with self.assertRaises(ringside.InvalidArgument):  # from the C library
                t.progress(11, 10)
            with self.assertRaises(ringside.InvalidArgument):
                t.progress(-1, 10)
            with self.assertRaises(ringside.InvalidArgument):
                t.write(b"x", "stdin")
            with self.assertRaises(ringside.InvalidArgument):
                t.end("idle")
            t.end()
            with self.assertRaises(ringside.NoSuchTask):
                t.progress(1, 2)
            with self.assertRaises(ringside.NoSuchTask):
                t.end()

    def test_too_many_tasks(self):
        with self.agent(max_tasks=1) as a:
            a.task("t1")
            t2 = a.task("t2")  # not strict: unobserved, calls return False
            self.assertFalse(t2.live)
            self.assertFalse(t2.progress(1, 2))
            self.assertFalse(t2.end())
        with self.agent(max_tasks=1, strict=True) as a:
            a.task("t1")
            with self.assertRaises(ringside.TooManyTasks) as cm:
                a.task("t2")
            self.assertEqual(cm.exception.code, -6)

    def test_ring_full_is_not_an_error_unless_strict(self):
        with self.agent(log_slots=8) as a:
            results = [a.status("working" if i % 2 else "idle", str(i)) for i in range(40)]
            self.assertIn(False, results)
            self.assertGreater(a.stats()["events_dropped"], 0)
        with self.agent(log_slots=8, strict=True) as a:
            with self.assertRaises(ringside.RingFull):
                for i in range(40):
                    a.status("working" if i % 2 else "idle")

    def test_task_context_manager_outcomes(self):
        with self.agent() as a:
            with a.task("ok", "fine") as t:
                t.progress(1, 1)
            with self.assertRaises(RuntimeError):
                with a.task("boom"):
                    raise RuntimeError("disk on fire")
            with self.assertRaises(KeyboardInterrupt):
                with a.task("interrupted"):
                    raise KeyboardInterrupt()
            with self.assertRaises(subprocess.CalledProcessError):
                with a.task("called"):
                    raise subprocess.CalledProcessError(4, ["x"])
            with a.task("explicit") as t:
                t.end("cancelled", 9)
            with a.task("ran") as t:
                t.run([sys.executable, "-c", "raise SystemExit(5)"])
        recs = dump(self.shm)
        ends = {e["task"]: (e["outcome"], e["exit_code"]) for e in of(recs, "task_end")}
        self.assertEqual(ends, {"ok": (4, 0), "boom": (3, 1), "interrupted": (5, 130),
                                "called": (3, 4), "explicit": (5, 9), "ran": (3, 5)})
        self.assertEqual(term_bytes(recs, "boom", 2), b"\r\nRuntimeError: disk on fire\r\n")

    def test_no_sidecar_directory(self):
        missing = os.path.join(self.tmp.name, "nope")
        with self.assertLogs("ringside", logging.WARNING) as logs:
            a = ringside.Agent("py-1", "proj", shm_dir=missing)
        self.assertIn("runs unobserved", logs.output[0])
        with a:
            self.assertFalse(a.connected)
            self.assertFalse(a.status("working"))
            with a.task("t1", "x") as t:
                self.assertFalse(t.progress(1, 2))
                self.assertFalse(t.write(b"x"))
                r = t.run([sys.executable, "-c", "print('still runs')"], capture=True)
                self.assertEqual(r.stdout.replace(b"\r\n", b"\n"), b"still runs\n")
            self.assertEqual(a.stats(), {})
            self.assertEqual(a.run("t2", ["true"]).returncode, 0)
        with self.assertRaises(ringside.ShmUnavailable) as cm:
            ringside.Agent("py-1", "proj", shm_dir=missing, strict=True)
        self.assertEqual(cm.exception.code, -3)
        self.assertFalse(os.path.exists(missing))

    def test_closed_agent(self):
        a = self.agent()
        a.close()
        self.assertFalse(a.status("idle"))
        s = self.agent(strict=True)
        s.close()
        with self.assertRaises(ringside.Closed):
            s.status("idle")

    def test_fork(self):
        a = self.agent()
        t = a.task("parent-task")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: the inherited handle is inert; a new agent publishes
            code = 0
            try:
                os.close(r)
                if a.status("working", "from the child") is not False:
                    code = 10
                elif t.write(b"child bytes") is not False:
                    code = 11
                else:
                    try:
                        ringside.Agent("py-1", "proj", shm_dir=self.shm, strict=True)
                        strict_child = ringside.Agent("py-2", "proj", shm_dir=self.shm,
                                                      strict=True)
                        strict_child.status("working", "child's own ring")
                        strict_child.close()
                    except Exception:
                        code = 12
                a.close()  # frees memory only: the parent's ring stays open
            except BaseException:
                code = 13
            os.write(w, bytes([code]))
            os._exit(code)
        os.close(w)
        got = os.read(r, 1)
        os.close(r)
        _, st = os.waitpid(pid, 0)
        self.assertEqual((got, os.waitstatus_to_exitcode(st)), (b"\x00", 0))
        self.assertTrue(a.status("idle", "parent continues"))
        t.end()
        a.close()
        recs = dump(self.shm)
        rings = {r["agent"]: r for r in of(recs, "ring") if r["agent"] == "py-2"}
        self.assertEqual(rings["py-2"]["closed_cleanly"], 1)
        parent = [r for r in of(recs, "ring") if r["agent"] == "py-1"]
        details = [s["detail"] for s in of(recs, "status")]
        self.assertNotIn("from the child", details)
        self.assertIn("child's own ring", details)
        self.assertIn("parent continues", details)
        self.assertTrue(all(r["closed_cleanly"] == 1 for r in parent))
        self.assertEqual(term_bytes(recs, "parent-task"), b"")


if __name__ == "__main__":
    unittest.main()


# A child interpreter whose daemon thread publishes as fast as it can while the main thread
# returns: the close at interpreter exit must wait for the call in flight, not unmap under it.
_EXIT_WHILE_PUBLISHING = r"""
import sys, threading
sys.path.insert(0, sys.argv[1])
import ringside
a = ringside.Agent("py-d", "proj", shm_dir=sys.argv[2])
busy = threading.Event()
def spam():
    t = a.task("spam", "x")
    i = 0
    while True:
        a.status("working", "tick %d" % i)
        t.progress(i % 10, 10)
        t.write(b"z" * 300)
        i += 1
        if i == 50:
            busy.set()
threading.Thread(target=spam, daemon=True).start()
if not busy.wait(10):
    sys.exit(9)
if len(sys.argv) > 3:
    a.close()
    if a.status("idle") is not False:
        sys.exit(8)
"""

# A task left open at exit (sys.exit(3) outside any with block).
_EXIT_WITH_OPEN_TASK = r"""
import sys
sys.path.insert(0, sys.argv[1])
import ringside
a = ringside.Agent("py-o", "proj", shm_dir=sys.argv[2])
a.status("working", "about to leave")
t = a.task("left-open", "never ended")
sys.exit(3)
"""


class ThreadsAndExitTest(ShmCase):
    def child(self, code, *args):
        pkg = os.path.join(support.SRC, "client-sdk", "python")
        env = dict(os.environ, **support.sanitizer_env())
        return subprocess.run([sys.executable, "-c", code, pkg, self.shm, *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=support.T)

    def test_exit_while_a_daemon_thread_publishes(self):
        for i in range(8):  # the crash (SIGSEGV/SIGBUS) hit about one exit in two
            p = self.child(_EXIT_WHILE_PUBLISHING)
            self.assertEqual(p.returncode, 0, "run %d: %r" % (i, p.stderr[-2000:]))
        recs = dump(self.shm)
        self.assertTrue(all(r["closed_cleanly"] == 1 for r in of(recs, "ring")))

    def test_close_while_threads_publish(self):
        for i in range(4):
            p = self.child(_EXIT_WHILE_PUBLISHING, "close")
            self.assertEqual(p.returncode, 0, "run %d: %r" % (i, p.stderr[-2000:]))

    def test_exit_ends_open_tasks_as_failed(self):
        p = self.child(_EXIT_WITH_OPEN_TASK)
        self.assertEqual(p.returncode, 3, p.stderr)
        recs = dump(self.shm)
        ends = [(e["task"], e["outcome"], e["exit_code"]) for e in of(recs, "task_end")]
        self.assertEqual(ends, [("left-open", STATUS["failed"], 1)])

    def test_strict_task_start_dropped_returns_the_task(self):
        with ringside.Agent("py-s", "proj", shm_dir=self.shm, strict=True, log_slots=8,
                            terminal=False) as a:
            with self.assertRaises(ringside.RingFull):
                for i in range(40):
                    a.status("working", str(i))
            with self.assertWarns(ringside.RingFullWarning):
                t = a.task("x0")
            self.assertTrue(t.start_dropped)
            with self.assertRaises(ringside.TaskExists):
                a.task("x0")
            with self.assertRaises(ringside.RingFull):  # the end event is dropped too
                t.end("completed")
            self.assertTrue(t.ended)


# Loading the library when the first candidate works must run no program (ctypes.util's
# find_library runs ldconfig, gcc or ld: ~170 ms).  Audit hooks see every subprocess started.
_NO_SUBPROCESS = r"""
import sys
sys.path.insert(0, sys.argv[1])
started = []
sys.addaudithook(lambda ev, args: started.append(args[0]) if ev == "subprocess.Popen" else None)
import ringside
a = ringside.Agent("py-l", "proj", shm_dir=sys.argv[2])
a.close()
print(started)
"""


class LoadingTest(ShmCase):
    def test_no_program_is_run_when_the_library_loads(self):
        pkg = os.path.join(support.SRC, "client-sdk", "python")
        env = dict(os.environ, **support.sanitizer_env())
        p = subprocess.run([sys.executable, "-c", _NO_SUBPROCESS, pkg, self.shm], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=support.T)
        self.assertEqual((p.returncode, p.stdout), (0, b"[]\n"), p.stderr)


class ArgumentTypesTest(ShmCase):
    def test_bad_types_raise_clear_errors(self):
        with ringside.Agent("py-t", "proj", shm_dir=self.shm) as a:
            t = a.task("t1")
            for bad in (5, [65, 66], None, object()):
                with self.assertRaises(TypeError):
                    t.write(bad)
            self.assertTrue(t.write(bytearray(b"ok")))
            with self.assertRaises(ringside.InvalidArgument):
                t.progress(1.5, 3)
            with self.assertRaises(ringside.InvalidArgument):
                t.progress(True, 3)
            with self.assertRaises(ringside.InvalidArgument):
                a.status("working", 5)
            with self.assertRaises(ringside.InvalidArgument):
                a.status("working", "cut\0here")
            with self.assertRaises(ringside.InvalidArgument):
                t.end("failed", "3")
            self.assertTrue(t.end("failed", 3))

    def test_generator_closed_early_is_cancelled(self):
        with ringside.Agent("py-g", "proj", shm_dir=self.shm) as a:
            def steps():
                with a.task("gen") as t:
                    for i in range(10):
                        t.progress(i, 10)
                        yield i
            g = steps()
            next(g)
            g.close()  # GeneratorExit inside the with block
        ends = [(e["task"], e["outcome"], e["exit_code"]) for e in of(dump(self.shm), "task_end")]
        self.assertEqual(ends, [("gen", STATUS["cancelled"], 0)])
        self.assertEqual(term_bytes(dump(self.shm), "gen"), b"")
