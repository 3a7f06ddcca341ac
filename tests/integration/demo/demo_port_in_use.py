#!/usr/bin/python3
"""The demo refuses a port something else already listens on, with one clear line, instead of
passing its health check against someone else's server (issue #19)."""
import os
import socket
import subprocess
import sys

src, build = sys.argv[1], sys.argv[2]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    env = dict(os.environ, DEMO_NO_BUILD="1", DEMO_BUILD_DIR=build, DEMO_SECONDS="1",
               DEMO_PORT=str(port))
    r = subprocess.run(["bash", os.path.join(src, "scripts/demo.sh")], env=env,
                       capture_output=True, text=True, timeout=30)
out = r.stdout + r.stderr
print(out)
assert r.returncode == 1, f"exit {r.returncode}"
assert f"port {port} on 127.0.0.1 is already in use" in out, "no clear refusal line"
assert "Ringside demo is running" not in out
print("ok")
