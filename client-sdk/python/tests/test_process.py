"""ringside.run / Task.run: a child's output streamed to a task's terminal — into the ring, and
byte-exact through a real sidecar to a real WebSocket client; the pip-installed package."""
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import unittest

import support
from support import ShmCase, dump, of, term_bytes

import rstest
import ringside

PY = sys.executable
# A child that writes its argv[1] file's bytes to stdout and argv[2]'s to stderr, unchanged.
CAT2 = ("import sys; o=open(sys.argv[1],'rb').read(); e=open(sys.argv[2],'rb').read(); "
        "sys.stdout.buffer.write(o); sys.stdout.flush(); sys.stderr.buffer.write(e)")


class RunTest(ShmCase):
    def files(self, out, err=b""):
        paths = []
        for name, data in (("out", out), ("err", err)):
            p = os.path.join(self.tmp.name, name)
            with open(p, "wb") as f:
                f.write(data)
            paths.append(p)
        return paths

    def test_pipes_byte_exact_per_stream(self):
        rnd = random.Random(20)
        out = bytes(rnd.getrandbits(8) for _ in range(300000))
        err = b"\x1b[31mwarning\x1b[0m\n\x00\xff"
        with ringside.Agent("py-run", "proj", shm_dir=self.shm) as a:
            r = a.run("pipes", [PY, "-c", CAT2] + self.files(out, err), pty=False, capture=True)
        self.assertEqual(r.returncode, 0)
        self.assertEqual((r.stdout, r.stderr), (out, err))  # separate, as the streams are
        recs = dump(self.shm)
        self.assertEqual(term_bytes(recs, "pipes", 1), out)
        self.assertEqual(term_bytes(recs, "pipes", 2), err)
        self.assertEqual([(e["outcome"], e["exit_code"]) for e in of(recs, "task_end")], [(4, 0)])
        self.assertEqual(of(recs, "task_start")[0]["title"][:len(PY)], PY)

    def test_input_and_stdin_pipe(self):
        data = bytes(range(256)) * 2000  # beyond any pipe buffer: written as the child reads
        code = "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d[::-1])"
        with ringside.Agent("py-in", "proj", shm_dir=self.shm) as a:
            with a.task("in") as t:
                for pty in (False, True):
                    r = t.run([PY, "-c", code], input=data, pty=pty, capture=True, timeout=support.T)
                    self.assertEqual(r.returncode, 0)
                    if not pty:
                        self.assertEqual(r.stdout, data[::-1])
                r = t.run([PY, "-c", code], input=b"", pty=False, capture=True, timeout=support.T)
                self.assertEqual(r.stdout, b"")
                with self.assertRaises(ValueError):  # was: hung forever
                    t.run([PY, "-c", code], stdin=subprocess.PIPE, timeout=support.T)
                with self.assertRaises(TypeError):
                    t.run([PY, "-c", code], input="text", timeout=support.T)
                r = t.run([PY, "-c", "import sys; sys.stdin.close()"], input=data, pty=False,
                          timeout=support.T)  # the child stops reading: the rest is dropped
                self.assertEqual(r.returncode, 0)

    @unittest.skipUnless(ringside.pty_available(), "no pty on this platform")
    def test_pty_child_sees_a_terminal(self):
        code = "import sys; print(sys.stdout.isatty(), sys.stderr.isatty()); " \
               "print('\\x1b[32mgreen\\x1b[0m'); sys.exit(3)"
        with ringside.Agent("py-run", "proj", shm_dir=self.shm) as a:
            r = a.run("tty", [PY, "-c", code], title="isatty", capture=True)
        self.assertEqual(r.returncode, 3)
        want = b"True True\r\n\x1b[32mgreen\x1b[0m\r\n"  # the pty turns \n into \r\n
        self.assertEqual(r.stdout, want)
        recs = dump(self.shm)
        self.assertEqual(term_bytes(recs, "tty", 1), want)
        self.assertEqual([(e["outcome"], e["exit_code"]) for e in of(recs, "task_end")], [(3, 3)])

    def test_signals_and_check(self):
        with ringside.Agent("py-run", "proj", shm_dir=self.shm) as a:
            r = a.run("term", ["sh", "-c", "kill -TERM $$"])
            self.assertEqual(r.returncode, -15)
            r = a.run("kill", ["sh", "-c", "kill -KILL $$"])
            self.assertEqual(r.returncode, -9)
            with self.assertRaises(subprocess.CalledProcessError) as cm:
                a.run("check", ["sh", "-c", "exit 6"], check=True)
            self.assertEqual(cm.exception.returncode, 6)
            with self.assertRaises(FileNotFoundError):
                a.run("missing", ["/nonexistent/cmd"])
        ends = {e["task"]: (e["outcome"], e["exit_code"]) for e in of(dump(self.shm), "task_end")}
        self.assertEqual(ends, {"term": (5, 143), "kill": (3, 137), "check": (3, 6),
                                "missing": (3, 1)})

    def test_error_while_copying_kills_the_child(self):
        with ringside.Agent("py-run", "proj", shm_dir=self.shm) as a:
            t = a.task("ended")
            t.end()
            t0 = time.monotonic()
            with self.assertRaises(ringside.NoSuchTask):
                t.run(["sh", "-c", "echo x; sleep 30"])
            self.assertLess(time.monotonic() - t0, 10)

    def test_echo_copies_to_stdout(self):
        code = ("import ringside, sys\n"
                "with ringside.Agent('py-echo', 'proj', shm_dir=sys.argv[1]) as a:\n"
                "    a.run('echo', ['printf', 'a\\033[1mb\\n'], echo=True, pty=False)\n")
        p = subprocess.run([PY, "-c", code, self.shm], capture_output=True, timeout=support.T,
                           env=dict(os.environ, PYTHONPATH=os.path.join(support.SRC, "client-sdk",
                                                                        "python"),
                                    **support.sanitizer_env()))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, b"a\x1b[1mb\n")
        self.assertEqual(term_bytes(dump(self.shm), "echo", 1), b"a\x1b[1mb\n")

    def test_timeout_kills_the_process_group(self):
        with ringside.Agent("py-run", "proj", shm_dir=self.shm) as a:
            t0 = time.monotonic()
            with self.assertRaises(subprocess.TimeoutExpired):
                a.run("slow", ["sh", "-c", "echo started; sleep 30 & wait"], timeout=1)
            self.assertLess(time.monotonic() - t0, 10)
        recs = dump(self.shm)
        self.assertEqual([(e["outcome"]) for e in of(recs, "task_end")], [3])
        self.assertIn(b"started", term_bytes(recs, "slow", 1))


class SidecarStreamTest(unittest.TestCase):
    """A child's output through a real sidecar to a real WebSocket client, byte for byte."""

    def setUp(self):
        self.sc = rstest.Sidecar(("--scrollback", "1048576"))

    def tearDown(self):
        self.sc.stop()

    def stream(self, task_id, args, pty):
        async def go():
            with ringside.Agent("py-e2e", "proj", shm_dir=self.sc.shm_dir) as a:
                async with rstest.connect(self.sc) as obs:
                    t = a.task(task_id, "streamed")
                    await rstest.recv_until(obs, lambda m: m.get("type") == "task_started"
                                            and m.get("task_id") == task_id)
                async with rstest.connect(self.sc, "/ws/terminal/%s" % task_id) as ws:
                    hdr = await rstest.recv_json(ws)
                    self.assertEqual((hdr["type"], hdr["agent_id"]), ("terminal", "py-e2e"))
                    with t:
                        r = await asyncio.to_thread(t.run, args, pty=pty, capture=True)
                    data, texts = b"", []
                    deadline = time.monotonic() + 15
                    while not any(m.get("type") == "task_ended" for m in texts):
                        left = deadline - time.monotonic()
                        self.assertGreater(left, 0, "no task_ended: %d bytes" % len(data))
                        m = await asyncio.wait_for(ws.recv(), left)
                        if isinstance(m, bytes):
                            data += m
                        else:
                            texts.append(json.loads(m))
                    return r, data, texts[-1]
        return rstest.run_async(go())

    def test_pipe_output_byte_exact(self):
        rnd = random.Random(7)
        payload = bytes(rnd.getrandbits(8) for _ in range(200000)) + \
            b"\x1b[31mred\x1b[0m\r\n\x1b[2J\x1b[H\x00\xff\x1b]0;title\x07"
        path = os.path.join(self.sc.shm_dir, "..", "payload-%d" % os.getpid())
        with open(path, "wb") as f:
            f.write(payload)
        try:
            code = "import sys; sys.stdout.buffer.write(open(sys.argv[1],'rb').read())"
            r, data, end = self.stream("pipe-1", [PY, "-c", code, path], pty=False)
        finally:
            os.unlink(path)
        self.assertEqual(r.stdout, payload)
        self.assertEqual(len(data), len(payload))
        self.assertTrue(data == payload, "bytes differ")
        self.assertEqual((end["outcome"], end["exit_code"]), ("completed", 0))

    @unittest.skipUnless(ringside.pty_available(), "no pty on this platform")
    def test_pty_output_byte_exact(self):
        code = ("import sys\nfor i in range(2000): print('\\x1b[1;3%dmline %d\\x1b[0m ✓' % "
                "(i % 8, i))\nsys.exit(2)")
        r, data, end = self.stream("pty-1", [PY, "-c", code], pty=True)
        want = b"".join(("\x1b[1;3%dmline %d\x1b[0m ✓\r\n" % (i % 8, i)).encode()
                        for i in range(2000))
        self.assertEqual(r.stdout, want)
        self.assertTrue(data == want, "bytes differ (%d vs %d)" % (len(data), len(want)))
        self.assertEqual((end["outcome"], end["exit_code"]), ("failed", 2))


class InstalledPackageTest(ShmCase):
    """pip install of client-sdk/python, then import from the install with no library path."""

    def test_pip_install_finds_its_library(self):
        if support.sanitizer_env():
            self.skipTest("sanitizer build: the library needs the ASan runtime preloaded")
        target = os.path.join(self.tmp.name, "site")
        env = {k: v for k, v in os.environ.items()
               if k not in ("LD_LIBRARY_PATH", "RINGSIDE_LIB")}
        env["PIP_NO_INDEX"] = "1"  # nothing may come from an index
        # pip builds in place: copy the sources into a tree whose build/lib is the real one, so
        # that setup.py finds the library as it would in a checkout (../../build/lib).
        tree = os.path.join(self.tmp.name, "tree")
        os.makedirs(os.path.join(tree, "client-sdk"))
        os.symlink(os.path.dirname(support.LIB), os.path.join(tree, "build"))
        build = os.path.join(tree, "client-sdk", "python")
        subprocess.run(["cp", "-r", os.path.join(support.SRC, "client-sdk", "python"), build],
                       check=True, timeout=support.T)
        p = subprocess.run([PY, "-m", "pip", "install", "--quiet", "--target", target, build],
                           capture_output=True, timeout=120, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.exists(os.path.join(target, "ringside", "_native",
                                                    "libringside.so.0")))
        self.assertTrue(os.path.exists(os.path.join(target, "ringside", "py.typed")))
        env["PYTHONPATH"] = target
        code = ("import ringside, ringside._lib as l\n"
                "with ringside.Agent('inst', 'proj', shm_dir=%r) as a:\n"
                "    a.status('working', 'installed')\n"
                "print(l.path())" % self.shm)
        p = subprocess.run([PY, "-c", code], capture_output=True, timeout=support.T, env=env,
                           cwd=self.tmp.name)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.decode().strip().startswith(os.path.join(target, "ringside")),
                        p.stdout)
        self.assertEqual([s["detail"] for s in of(dump(self.shm), "status")], ["installed"])

    def test_wheel_is_tagged_for_the_platform(self):
        # It holds a native library: py3-none-any (as it was) would install on any machine.
        out = os.path.join(self.tmp.name, "wheels")
        env = {k: v for k, v in os.environ.items() if k != "RINGSIDE_LIB"}
        env["PIP_NO_INDEX"] = "1"
        env["RINGSIDE_LIB"] = support.LIB
        p = subprocess.run([PY, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out,
                            os.path.join(support.SRC, "client-sdk", "python")],
                           capture_output=True, timeout=120, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        names = os.listdir(out)
        self.assertEqual(len(names), 1, names)
        self.assertRegex(names[0], r"^ringside-0\.1\.0-py3-none-linux_[a-z0-9_]+\.whl$")


if __name__ == "__main__":
    unittest.main()
