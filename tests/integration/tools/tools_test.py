#!/usr/bin/python3
"""Integration tests of ringside-pub, ringside-run, the examples, the installed SDK and its ABI.

Real binaries write real ring files into a temporary shm dir; ring_dump (the sidecar's reader,
ipc/ipc_reader.h) reads them back.  Run one class: tools_test.py PubTest.
Environment (set by ctest): RINGSIDE_BIN, RINGSIDE_LIB, RINGSIDE_SRC, RING_DUMP.
"""
import fcntl
import glob
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import unittest

BIN = os.environ.get("RINGSIDE_BIN", "build/bin")
LIB = os.environ.get("RINGSIDE_LIB", "build/lib")
SRC = os.environ.get("RINGSIDE_SRC", ".")
RING_DUMP = os.environ.get("RING_DUMP", os.path.join(BIN, "tools_ring_dump"))
PUB = os.path.join(BIN, "ringside-pub")
RUN = os.path.join(BIN, "ringside-run")
AGENT = os.path.join(BIN, "ringside-example-agent")
T = 20  # seconds: bound of every subprocess

RED = b"\x1b[31mred\x1b[0m\n"
RED_TTY = b"\x1b[31mred\x1b[0m\r\n"  # what a terminal receives: the pty turns \n into \r\n

STATUS = {"idle": 0, "working": 1, "stuck": 2, "failed": 3, "completed": 4, "cancelled": 5}


def dump(shm):
    """Every record of every ring in shm, as dicts (see ring_dump.c)."""
    p = subprocess.run([RING_DUMP, shm], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=T)
    lines = p.stdout.decode("utf-8", "surrogateescape").splitlines()
    recs = [json.loads(l) for l in lines if l.strip()]
    if p.returncode != 0:
        raise AssertionError(f"ring_dump failed ({p.returncode}): {p.stderr!r} {recs!r}")
    return recs


def of(recs, type_, **match):
    return [r for r in recs if r.get("type") == type_ and
            all(r.get(k) == v for k, v in match.items())]


def term_bytes(recs, task, stream=None):
    out = b""
    for r in of(recs, "term", task=task):
        if stream is None or r["stream"] == stream:
            out += bytes.fromhex(r["hex"])
    return out


class ShmCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="rs-tools-")
        self.shm = os.path.join(self.tmp.name, "shm")
        os.mkdir(self.shm)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RINGSIDE_")}

    def tearDown(self):
        self.tmp.cleanup()

    def run_tool(self, args, input=None, env=None, **kw):
        e = dict(self.env)
        e.update(env or {})
        return subprocess.run(args, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=e, timeout=T, **kw)

    def pub(self, *args, input=None, env=None, ident=True):
        base = [PUB, "--shm-dir", self.shm, "--agent", "sh-1", "--project", "proj"] if ident \
            else [PUB]
        return self.run_tool(base + list(args), input=input, env=env)

    def rings(self, recs):
        return of(recs, "ring")


class PubTest(ShmCase):
    def test_status(self):
        p = self.pub("status", "working", "reading the spec")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, b"")
        recs = dump(self.shm)
        rings = self.rings(recs)
        self.assertEqual(len(rings), 1, recs)
        self.assertEqual(rings[0]["agent"], "sh-1")
        self.assertEqual(rings[0]["project"], "proj")
        self.assertEqual(rings[0]["closed_cleanly"], 1)
        st = of(recs, "status")
        self.assertEqual([(s["status"], s["detail"]) for s in st], [(1, "reading the spec")])
        self.assertGreater(st[0]["ts_ns"], 0)

    def test_long_text_is_truncated_not_refused(self):
        # Was: over 4096 bytes a usage error saying "keep it under 256 bytes".
        for n in (300, 5000, 60000):
            p = self.pub("status", "working", "é" * n)
            self.assertEqual((p.returncode, p.stderr), (0, b""), n)
            p = self.pub("task-start", "t%d" % n, "t" * n)
            self.assertEqual((p.returncode, p.stderr), (0, b""), n)
        recs = dump(self.shm)
        details = [st["detail"] for st in of(recs, "status")]
        self.assertEqual(details, ["é" * 127] * 3)  # 254 bytes: cut on a character boundary
        self.assertEqual({t["title"] for t in of(recs, "task_start")}, {"t" * 255})

    def test_every_status_name(self):
        for name, value in STATUS.items():
            p = self.pub("status", name)
            self.assertEqual(p.returncode, 0, p.stderr)
        got = sorted(s["status"] for s in of(dump(self.shm), "status"))
        self.assertEqual(got, sorted(STATUS.values()))

    def test_env_and_flags_win(self):
        env = {"RINGSIDE_SHM_DIR": self.shm, "RINGSIDE_AGENT": "env-agent",
               "RINGSIDE_PROJECT": "env-proj", "RINGSIDE_OWNER": "alice"}
        p = self.pub("status", "idle", env=env, ident=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.run_tool([PUB, "--agent", "flag-agent", "status", "stuck"], env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        rings = {r["agent"]: r for r in self.rings(dump(self.shm))}
        self.assertEqual(set(rings), {"env-agent", "flag-agent"})
        self.assertEqual(rings["env-agent"]["owner"], "alice")
        self.assertEqual(rings["flag-agent"]["project"], "env-proj")

    def test_task_across_processes(self):
        """task-start, progress, term and task-end are separate processes (separate rings)."""
        steps = [
            self.pub("task-start", "t-1", "Build the thing"),
            self.pub("progress", "t-1", "3", "10", "compiling"),
            self.pub("term", "t-1", input=b"\x1b[32mok\x1b[0m\r\n"),
            self.pub("term", "t-1", "--stderr", input=b"warn\r\n"),
            self.pub("task-end", "t-1", "failed", "7"),
        ]
        for p in steps:
            self.assertEqual(p.returncode, 0, p.stderr)
        recs = dump(self.shm)
        self.assertEqual(len(self.rings(recs)), 5)
        self.assertTrue(all(r["closed_cleanly"] == 1 for r in self.rings(recs)))
        starts = of(recs, "task_start", task="t-1")
        self.assertIn("Build the thing", [s["title"] for s in starts])
        prog = of(recs, "progress", task="t-1")
        self.assertEqual([(p["step"], p["total"], p["message"]) for p in prog],
                         [(3, 10, "compiling")])
        self.assertEqual(term_bytes(recs, "t-1", 1), b"\x1b[32mok\x1b[0m\r\n")
        self.assertEqual(term_bytes(recs, "t-1", 2), b"warn\r\n")
        ends = of(recs, "task_end", task="t-1")
        self.assertEqual([(e["outcome"], e["exit_code"]) for e in ends], [(3, 7)])

    def test_term_binary_safe(self):
        data = bytes(range(256)) * 800  # 200 KiB, every byte value, NULs included
        p = self.pub("term", "bin", input=data)
        self.assertEqual(p.returncode, 0, p.stderr)
        recs = dump(self.shm)
        self.assertEqual(term_bytes(recs, "bin", 1), data)
        self.assertEqual(of(recs, "term_gap"), [])

    def test_term_empty_input(self):
        p = self.pub("term", "empty", input=b"")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(term_bytes(dump(self.shm), "empty"), b"")

    def test_missing_shm_dir(self):
        """No sidecar: a warning and exit 0 (a `set -e` agent carries on), unless --strict."""
        missing = os.path.join(self.tmp.name, "nope")
        base = [PUB, "--shm-dir", missing, "--agent", "a", "--project", "p"]
        p = self.run_tool(base + ["status", "idle"])
        self.assertEqual(p.returncode, 0)
        self.assertEqual(p.stderr.decode(),
                         f"ringside-pub: warning: shm dir {missing} does not exist: start the "
                         f"sidecar first or pass --shm-dir (nothing published; --strict makes "
                         f"this an error)\n")
        p = self.run_tool(base + ["--strict", "status", "idle"])
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr.decode(),
                         f"ringside-pub: shm dir {missing} does not exist: start the sidecar "
                         f"first or pass --shm-dir\n")
        # term reads its input to EOF, so the writer of a pipe gets no EPIPE
        p = self.run_tool(["bash", "-c", 'set -eo pipefail; '
                           'head -c 300000 /dev/zero | "$@"; echo done', "bash"] + base +
                          ["term", "t1"])
        self.assertEqual((p.returncode, p.stdout), (0, b"done\n"), p.stderr)
        self.assertFalse(os.path.exists(missing))

    def test_stdin_mode_one_ring(self):
        script = (b'status working "reading the repo"\n'
                  b"# a comment, then a blank line\n\n"
                  b'task-start t-1 "Build it"\n'
                  b"progress t-1 3 10 compiling\n"
                  b'term t-1 "\\e[32mok\\e[0m\\r\\n\\x00\\xff"\n'
                  b"term t-1 --stderr 'warn '\n"
                  b"task-end t-1 failed 7\n"
                  b'task-start t-2\n'
                  b'status stuck "-5 \xc2\xb0C"\r\n'
                  b"task-end t-2 completed\n"
                  b"status idle")  # no final newline
        p = self.pub("--stdin", input=script)
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        recs = dump(self.shm)
        self.assertEqual(len(self.rings(recs)), 1)
        self.assertEqual(self.rings(recs)[0]["closed_cleanly"], 1)
        self.assertEqual([(s["status"], s["detail"]) for s in of(recs, "status")],
                         [(1, "reading the repo"), (2, "-5 \u00b0C"), (0, "")])
        self.assertEqual(of(recs, "task_start", task="t-1")[0]["title"], "Build it")
        self.assertEqual(term_bytes(recs, "t-1", 1), b"\x1b[32mok\x1b[0m\r\n\x00\xff")
        self.assertEqual(term_bytes(recs, "t-1", 2), b"warn ")
        self.assertEqual(sorted((e["task"], e["outcome"], e["exit_code"])
                                for e in of(recs, "task_end")),
                         [("t-1", 3, 7), ("t-2", 4, 0)])

    def test_stdin_mode_bad_lines_are_skipped(self):
        script = (b"status working\nbogus\nstatus busy\nprogress nope 1 2\n"
                  b"status idle \"open\n" + b"x" * 70000 + b"\nstatus completed\n"
                  b'status idle "nul\x00inside"\n'
                  b"status \x1b[2J\x1b]0;pwned\x07 x\n")
        p = self.pub("--stdin", input=script)
        self.assertEqual(p.returncode, 2)
        err = p.stderr.decode().splitlines()
        self.assertEqual(err, [
            "ringside-pub: line 2: unknown command 'bogus': use status, task-start, progress, "
            "term or task-end",
            "ringside-pub: line 3: unknown status 'busy': use idle, working, stuck, failed, "
            "completed or cancelled",
            "ringside-pub: line 5: unterminated double quote",
            "ringside-pub: line 6: line longer than 65536 bytes: skipped",
            # was: "unterminated double quote"
            "ringside-pub: line 8: the line contains a NUL byte: write \\x00 inside double quotes",
            # was echoed raw (the escape sequences reached the terminal)
            "ringside-pub: line 9: unknown status '\\x1b[2J\\x1b]0;pwned\\x07': use idle, "
            "working, stuck, failed, completed or cancelled",
        ])
        # progress of a task not started here starts it (as across processes): line 4 is fine
        recs = dump(self.shm)
        self.assertEqual([s["status"] for s in of(recs, "status")], [1, 4])
        self.assertEqual(len(of(recs, "progress", task="nope")), 1)

    def test_stdin_mode_without_sidecar(self):
        missing = os.path.join(self.tmp.name, "nope")
        base = [PUB, "--shm-dir", missing, "--agent", "a", "--project", "p", "--stdin"]
        p = self.run_tool(base, input=b"status idle\nstatus busy\n")
        self.assertEqual(p.returncode, 2)  # lines are still checked
        self.assertIn(b"warning: shm dir", p.stderr)
        self.assertIn(b"line 2: unknown status 'busy'", p.stderr)
        p = self.run_tool(base, input=b"status idle\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.run_tool(base + ["--strict"], input=b"status idle\n")
        self.assertEqual(p.returncode, 1)

    def test_shm_dir_is_a_file(self):
        f = os.path.join(self.tmp.name, "file")
        open(f, "w").close()
        p = self.run_tool([PUB, "--shm-dir", f, "--agent", "a", "--project", "p",
                           "status", "idle"])
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"not a directory", p.stderr)
        self.assertEqual(p.stderr.count(b"\n"), 1)

    def test_usage_errors(self):
        cases = [
            ([], b"no command"),
            (["status", "busy"], b"unknown status 'busy'"),
            (["progress", "t", "x", "3"], b"STEP 'x'"),
            (["task-end", "t", "done"], b"unknown outcome 'done'"),
            (["frob"], b"unknown command 'frob'"),
            (["--nope", "status", "idle"], b"unknown option '--nope'"),
        ]
        for args, msg in cases:
            p = self.pub(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertTrue(p.stderr.startswith(b"ringside-pub: "), p.stderr)
            self.assertIn(msg, p.stderr)
            self.assertEqual(p.stderr.count(b"\n"), 1, p.stderr)
        p = self.run_tool([PUB, "status", "idle"])
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"RINGSIDE_AGENT", p.stderr)
        self.assertEqual(os.listdir(self.shm), [])  # nothing written on usage errors

    def test_help_and_version(self):
        p = self.run_tool([PUB, "--help"])
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"task-end TASK completed|failed|cancelled", p.stdout)
        p = self.run_tool([PUB, "--version"])
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"libringside 0.", p.stdout)


class RunTest(ShmCase):
    def run_cmd(self, *cmd, task="t-run", input=b"", extra=(), **kw):
        return self.run_tool([RUN, "--shm-dir", self.shm, "--agent", "runner", "--project",
                              "proj", "--task", task, *extra, "--", *cmd], input=input, **kw)

    def test_red_exit_3(self):
        p = self.run_cmd("sh", "-c", r'printf "\033[31mred\033[0m\n"; exit 3')
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertEqual(p.stdout, RED_TTY)
        self.assertEqual(p.stderr, b"")
        recs = dump(self.shm)
        self.assertEqual(term_bytes(recs, "t-run"), RED_TTY)
        ends = of(recs, "task_end", task="t-run")
        self.assertEqual([(e["outcome"], e["exit_code"]) for e in ends],
                         [(STATUS["failed"], 3)])
        terms = of(recs, "term", task="t-run")
        self.assertLessEqual(max(t["ts_ns"] for t in terms), ends[0]["ts_ns"])
        starts = of(recs, "task_start", task="t-run")
        self.assertEqual(len(starts), 1)
        self.assertTrue(starts[0]["title"].startswith("sh -c printf"))
        self.assertLessEqual(starts[0]["ts_ns"], min(t["ts_ns"] for t in terms))
        self.assertEqual([s["status"] for s in of(recs, "status")],
                         [STATUS["working"], STATUS["failed"]])
        self.assertEqual(self.rings(recs)[0]["closed_cleanly"], 1)

    def test_success_and_title(self):
        p = self.run_cmd("true", extra=("--title", "Nothing to do"))
        self.assertEqual(p.returncode, 0, p.stderr)
        recs = dump(self.shm)
        self.assertEqual(of(recs, "task_start")[0]["title"], "Nothing to do")
        self.assertEqual([(e["outcome"], e["exit_code"]) for e in of(recs, "task_end")],
                         [(STATUS["completed"], 0)])
        self.assertEqual(of(recs, "status")[-1]["status"], STATUS["completed"])

    def test_large_output_byte_exact(self):
        # 300 KiB of every byte value except those the pty's line discipline rewrites.
        payload = bytes(b for b in range(256) if b not in (0x0a, 0x0d)) * 1200
        path = os.path.join(self.tmp.name, "payload")
        with open(path, "wb") as f:
            f.write(payload)
        p = self.run_cmd("cat", path)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, payload)
        self.assertEqual(term_bytes(dump(self.shm), "t-run"), payload)

    def test_stdin_forwarded_without_echo(self):
        p = self.run_cmd("sh", "-c", 'read a; read b; echo "got:$a,$b"; cat',
                         input=b"one\ntwo\nthree")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, b"got:one,two\r\nthree")
        self.assertEqual(term_bytes(dump(self.shm), "t-run"), p.stdout)

    def test_closed_stdin(self):
        p = self.run_tool(["sh", "-c", 'exec <&-; exec "$@"', "sh", RUN, "--shm-dir", self.shm,
                           "--agent", "a", "--project", "p", "--task", "t", "--", "sh", "-c",
                           "echo hi; cat; exit 4"])
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertEqual(p.stdout, b"hi\r\n")
        self.assertEqual(term_bytes(dump(self.shm), "t"), b"hi\r\n")

    def test_command_not_found(self):
        p = self.run_cmd("/nonexistent/command")
        self.assertEqual(p.returncode, 127)
        self.assertIn(b"cannot run /nonexistent/command", p.stdout)  # reported on the pty
        ends = of(dump(self.shm), "task_end")
        self.assertEqual([(e["outcome"], e["exit_code"]) for e in ends],
                         [(STATUS["failed"], 127)])

    def test_killed_by_signal(self):
        p = self.run_cmd("sh", "-c", "kill -KILL $$")
        self.assertEqual(p.returncode, 128 + signal.SIGKILL)
        ends = of(dump(self.shm), "task_end")
        self.assertEqual([(e["outcome"], e["exit_code"]) for e in ends],
                         [(STATUS["failed"], 137)])

    def _forward(self, sig, expect_rc):
        e = dict(self.env)
        proc = subprocess.Popen(
            [RUN, "--shm-dir", self.shm, "--agent", "runner", "--project", "proj", "--task",
             "t-sig", "--", "sh", "-c",
             "echo ready; i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; exit 9"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
        try:
            out = read_until(proc.stdout.fileno(), b"ready", T)
            self.assertIn(b"ready", out)
            proc.send_signal(sig)
            rc = proc.wait(timeout=T)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        self.assertEqual(rc, expect_rc)
        ends = of(dump(self.shm), "task_end", task="t-sig")
        self.assertEqual(len(ends), 1)
        return ends[0]

    def test_sigterm_forwarded_cancels(self):
        end = self._forward(signal.SIGTERM, 128 + signal.SIGTERM)
        self.assertEqual((end["outcome"], end["exit_code"]), (STATUS["cancelled"], 143))

    def test_sigint_forwarded_cancels(self):
        end = self._forward(signal.SIGINT, 128 + signal.SIGINT)
        self.assertEqual((end["outcome"], end["exit_code"]), (STATUS["cancelled"], 130))

    def test_missing_shm_dir_still_runs(self):
        missing = os.path.join(self.tmp.name, "nope")
        p = self.run_tool([RUN, "--shm-dir", missing, "--agent", "a", "--project", "p",
                           "--task", "t", "--", "sh", "-c", "echo hi; exit 5"],
                          input=b"")
        self.assertEqual(p.returncode, 5)
        self.assertEqual(p.stdout, b"hi\r\n")
        self.assertEqual(p.stderr.count(b"\n"), 1, p.stderr)
        self.assertIn(b"ringside-run: warning: shm dir", p.stderr)
        self.assertIn(b"does not exist", p.stderr)
        self.assertFalse(os.path.exists(missing))

    def test_usage_errors(self):
        for args, msg in [([], b"no command"), (["--task", "t"], b"no command"),
                          (["--", "true"], b"--task")]:
            p = self.run_tool([RUN, "--agent", "a", "--project", "p", *args])
            self.assertEqual(p.returncode, 2, args)
            self.assertIn(msg, p.stderr)
            self.assertEqual(p.stderr.count(b"\n"), 1)
        p = self.run_tool([RUN, "--help"])
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"--task T", p.stdout)

    def test_tty_window_size_and_input(self):
        """Under a real terminal: size copied at start, SIGWINCH forwarded, keystrokes reach CMD."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        script = ('stty size; trap "stty size; exit 0" WINCH; echo ready; read x; echo "got:$x"; '
                  'i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exit 1')

        def ctty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        proc = subprocess.Popen(
            [RUN, "--shm-dir", self.shm, "--agent", "runner", "--project", "proj", "--task",
             "t-tty", "--", "sh", "-c", script],
            stdin=slave, stdout=slave, stderr=slave, env=self.env, start_new_session=True,
            preexec_fn=ctty)
        os.close(slave)
        try:
            out = read_until(master, b"ready", T)
            os.write(master, b"typed\r")
            out += read_until(master, b"got:typed", T)
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            rc = proc.wait(timeout=T)
            out += read_until(master, None, 2)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
        self.assertEqual(rc, 0, out)
        self.assertIn(b"30 100", out)
        self.assertIn(b"40 120", out)
        ring = term_bytes(dump(self.shm), "t-tty")
        self.assertIn(b"30 100\r\n", ring)
        self.assertIn(b"got:typed\r\n", ring)
        self.assertIn(b"40 120\r\n", ring)


def read_until(fd, needle, timeout):
    """Reads fd until needle appears (or EOF/EIO, or timeout seconds).  Returns what was read."""
    buf = b""
    deadline = time.monotonic() + timeout
    while needle is None or needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not r:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def sanitizer_preload(so):
    """With -DRINGSIDE_SANITIZE=address the library needs the ASan runtime loaded first when an
    uninstrumented program (python3) dlopens it.  Returns the environment for that, or {}."""
    p = subprocess.run(["ldd", so], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=T)
    for line in p.stdout.decode().splitlines():
        if "libasan" in line and "=>" in line:
            return {"LD_PRELOAD": line.split("=>")[1].split()[0],
                    "ASAN_OPTIONS": "detect_leaks=0"}  # the interpreter's own leaks are not ours
    return {}


class ExamplesTest(ShmCase):
    def test_c_agent(self):
        p = self.run_tool([AGENT, "--shm-dir", self.shm, "--agent", "c1", "--project", "demo",
                           "--loop", "4", "--delay-ms", "0"])
        self.assertEqual(p.returncode, 0, p.stderr)
        recs = dump(self.shm)
        self.assertEqual([r["agent"] for r in self.rings(recs)], ["c1"])
        ends = {e["task"]: (e["outcome"], e["exit_code"]) for e in of(recs, "task_end")}
        self.assertEqual(ends, {"c1-1": (4, 0), "c1-2": (4, 0), "c1-3": (4, 0), "c1-4": (3, 1)})
        # No reader ran while the agent did, so terminal rings freed by ended tasks were reused:
        # an older task's output is either intact or reported as a gap, never silently lost.
        for task in ("c1-1", "c1-2", "c1-3"):
            out = term_bytes(recs, task, 1)
            if not of(recs, "term_gap", task=task, stream=1):
                self.assertIn(b"\x1b[32m[8/8]\x1b[0m packaging...\r\n", out, task)
        if not of(recs, "term_gap", task="c1-3", stream=2):
            self.assertIn(b"warning:", term_bytes(recs, "c1-3", 2))
        self.assertIn(b"\x1b[32m[7/8]\x1b[0m running tests...\r\n", term_bytes(recs, "c1-4", 1))
        self.assertIn(b"\x1b[1;31merror:\x1b[0m", term_bytes(recs, "c1-4", 2))
        # Progress keeps only the latest value per open task: ended tasks have none left to read.
        statuses = {s["status"] for s in of(recs, "status")}
        self.assertTrue({0, 1, 3} <= statuses, statuses)

    def test_c_agent_sigterm(self):
        proc = subprocess.Popen([AGENT, "--shm-dir", self.shm, "--agent", "c2", "--project",
                                 "demo", "--loop", "0", "--delay-ms", "20"], env=self.env)
        try:
            deadline = time.monotonic() + T
            while not os.listdir(self.shm) and time.monotonic() < deadline:
                time.sleep(0.02)  # polling a directory: no event to wait on without inotify
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=T), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        recs = dump(self.shm)
        self.assertEqual(self.rings(recs)[0]["closed_cleanly"], 1)
        self.assertEqual(of(recs, "status")[-1]["status"], STATUS["cancelled"])

    def test_shell_agent(self):
        p = self.run_tool(["sh", os.path.join(SRC, "examples/shell-agent.sh"), "--shm-dir",
                           self.shm, "--agent", "sh-agent", "--loop", "2", "--delay", "0"],
                          env={"RINGSIDE_BIN": BIN})
        self.assertEqual(p.returncode, 0, p.stderr)
        recs = dump(self.shm)
        self.assertTrue(all(r["agent"] == "sh-agent" for r in self.rings(recs)))
        ends = sorted((e["task"], e["outcome"]) for e in of(recs, "task_end"))
        self.assertEqual(ends, [("sh-agent-1", 4), ("sh-agent-2", 4)])
        self.assertIn(b"\x1b[32mdeployed\x1b[0m", term_bytes(recs, "sh-agent-2"))
        self.assertIn((5, 5, "promote"), [(r["step"], r["total"], r["message"])
                                          for r in of(recs, "progress", task="sh-agent-1")])

    def check_example_agent(self, agent):
        recs = dump(self.shm)
        self.assertEqual([r["agent"] for r in self.rings(recs)], [agent])
        ends = sorted((e["task"], e["outcome"], e["exit_code"]) for e in of(recs, "task_end"))
        self.assertEqual(ends, [(f"{agent}-1", 4, 0), (f"{agent}-1-report", 4, 0),
                                (f"{agent}-2", 4, 0), (f"{agent}-2-report", 4, 0)])
        self.assertIn(b"\x1b[1;32maccuracy 0.93\x1b[0m\r\n", term_bytes(recs, f"{agent}-2"))
        self.assertIn(b"accuracy 0.93", term_bytes(recs, f"{agent}-2-report"))
        self.assertEqual(of(recs, "status")[-1]["status"], STATUS["idle"])

    def test_python_agent(self):
        """examples/python/agent.py with the ringside package; the library from RINGSIDE_LIB."""
        env = {"RINGSIDE_LIB": LIB, "PYTHONPATH": os.path.join(SRC, "client-sdk", "python"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(sanitizer_preload(os.path.join(LIB, "libringside.so")))
        p = self.run_tool(["/usr/bin/python3", os.path.join(SRC, "examples/python/agent.py"),
                           "--shm-dir", self.shm, "--agent", "py1", "--loop", "2",
                           "--delay-ms", "0"], env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.check_example_agent("py1")

    def test_node_agent(self):
        node = shutil.which("node")
        if node is None or not os.path.isdir(os.path.join(SRC, "client-sdk/node/node_modules/koffi")):
            self.skipTest("node or client-sdk/node/node_modules (scripts/install-deps.sh test) missing")
        env = {"RINGSIDE_LIB": LIB}
        env.update(sanitizer_preload(os.path.join(LIB, "libringside.so")))
        p = self.run_tool([node, os.path.join(SRC, "examples/node/agent.js"), "--shm-dir",
                           self.shm, "--agent", "node1", "--loop", "2", "--delay-ms", "0"],
                          env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.check_example_agent("node1")


PROGRAM = r"""
#include <ringside.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
    rs_options o; rs_agent *a = NULL; rs_status s; rs_stats st;
    (void)argc;
    rs_options_init(&o);
    o.shm_dir = argv[1]; o.agent_id = "installed"; o.project_id = "proj"; o.owner = "carol";
    if (rs_open(&o, &a) != RS_OK) return 10;
    if (rs_status_parse("stuck", &s) != RS_OK || s != RS_STATUS_STUCK) return 11;
    if (strcmp(rs_status_name(RS_STATUS_WORKING), "working") != 0) return 12;
    if (rs_set_status(a, s, "installed via pkg-config") != RS_OK) return 13;
    if (rs_task_start(a, "inst-1", "from the install tree") != RS_OK) return 14;
    if (rs_progress(a, "inst-1", 1, 2, "half") != RS_OK) return 15;
    if (rs_write(a, "inst-1", RS_STDOUT, "\x1b[1mhi\x1b[0m", 10) != RS_OK) return 16;
    if (rs_task_end(a, "inst-1", RS_STATUS_COMPLETED, 0) != RS_OK) return 17;
    if (rs_task_end(a, "inst-1", RS_STATUS_COMPLETED, 0) != RS_ENOTASK) return 18;
    if (rs_task_start(a, "inst-2", NULL) != RS_OK) return 21;
    if (rs_progress(a, "inst-2", 7, 9, "still open") != RS_OK) return 22;
    memset(&st, 0, sizeof st); st.size = sizeof st;
    if (rs_stats_get(a, &st) != RS_OK || st.term_bytes_written != 10) return 19;
    printf("%s %s\n", rs_version(), rs_strerror(RS_EFULL));
    return rs_close(a) == RS_OK ? 0 : 20;
}
"""


class InstallTest(ShmCase):
    def test_pkg_config_program(self):
        build = os.path.dirname(os.path.abspath(BIN))
        prefix = os.path.join(self.tmp.name, "prefix")
        p = self.run_tool(["cmake", "--install", build, "--prefix", prefix])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.exists(os.path.join(prefix, "include", "ringside.h")))
        pcs = glob.glob(os.path.join(prefix, "**", "pkgconfig", "ringside.pc"), recursive=True)
        self.assertEqual(len(pcs), 1, "ringside.pc not installed")
        for tool in ("ringside-pub", "ringside-run"):
            self.assertTrue(os.access(os.path.join(prefix, "bin", tool), os.X_OK), tool)
        # A .pc file written at configure time names that prefix (/usr/local by default), not
        # the --prefix given to `cmake --install` here: write the prefix this install would have
        # been configured with.  A relocatable .pc (prefix=${pcfiledir}/...) is left as it is.
        with open(pcs[0]) as f:
            pc = f.read().splitlines()
        pc = [f"prefix={prefix}" if l.startswith("prefix=") and "${pcfiledir}" not in l else l
              for l in pc]
        with open(pcs[0], "w") as f:
            f.write("\n".join(pc) + "\n")
        env = {"PKG_CONFIG_PATH": os.path.dirname(pcs[0])}
        flags = self.run_tool(["pkg-config", "--cflags", "--libs", "ringside"], env=env)
        self.assertEqual(flags.returncode, 0, flags.stderr)
        src = os.path.join(self.tmp.name, "prog.c")
        exe = os.path.join(self.tmp.name, "prog")
        with open(src, "w") as f:
            f.write(PROGRAM)
        cc = self.run_tool(["sh", "-c", f'cc -std=c11 -Wall -Werror "{src}" -o "{exe}" '
                                        f'$(pkg-config --cflags --libs ringside)'], env=env)
        self.assertEqual(cc.returncode, 0, cc.stderr)
        libdir = os.path.dirname(glob.glob(os.path.join(prefix, "**", "libringside.so"),
                                           recursive=True)[0])
        run = self.run_tool([exe, self.shm], env={"LD_LIBRARY_PATH": libdir})
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn(b"ring full", run.stdout)
        recs = dump(self.shm)
        ring = self.rings(recs)[0]
        self.assertEqual((ring["agent"], ring["owner"]), ("installed", "carol"))
        self.assertEqual(term_bytes(recs, "inst-1"), b"\x1b[1mhi\x1b[0m")
        self.assertEqual([(e["outcome"], e["exit_code"]) for e in of(recs, "task_end")], [(4, 0)])
        # an ended task's last progress comes before its end; a running task's latest value too
        self.assertEqual([(p["task"], p["step"], p["total"], p["message"])
                          for p in of(recs, "progress")],
                         [("inst-1", 1, 2, "half"), ("inst-2", 7, 9, "still open")])
        # The installed CLI works from the install tree alone.
        pub = self.run_tool([os.path.join(prefix, "bin", "ringside-pub"), "--shm-dir", self.shm,
                             "--agent", "installed", "--project", "proj", "status", "idle"])
        self.assertEqual(pub.returncode, 0, pub.stderr)


class AbiTest(unittest.TestCase):
    def test_only_rs_symbols_exported(self):
        so = os.path.join(LIB, "libringside.so")
        p = subprocess.run(["nm", "-D", "--defined-only", so], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=T, check=True)
        names = [l.split()[-1] for l in p.stdout.decode().splitlines() if l.strip()]
        self.assertTrue(names)
        bad = [n for n in names if not n.startswith("rs_")]
        self.assertEqual(bad, [], f"non-API symbols exported: {bad}")
        for fn in ("rs_open", "rs_set_status", "rs_task_start", "rs_progress", "rs_write",
                   "rs_task_end", "rs_close", "rs_strerror", "rs_version"):
            self.assertIn(fn, names)

    def test_soname(self):
        so = os.path.join(LIB, "libringside.so")
        p = subprocess.run(["objdump", "-p", so], stdout=subprocess.PIPE, timeout=T, check=True)
        self.assertIn(b"SONAME               libringside.so.0", p.stdout)


if __name__ == "__main__":
    unittest.main()
