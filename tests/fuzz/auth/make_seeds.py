#!/usr/bin/python3
"""Writes the seed corpus of fuzz_auth_verify into seeds/ (run from this directory).

Seeds start with the harness's mode byte (0: raw token vs HS256, 1: RS256, 2: ES256, 3: HS256 with
iss/aud, 4: "HEADER\\nPAYLOAD" signed by the harness).  Tokens are signed with the harness's fixed
HS256 secret so that mutations start from valid inputs.
"""
import base64, hashlib, hmac, json, os

SECRET = b"ringside-fuzz-secret-0123456789abcdef"
NOW = 1800000000

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")

def token(header, payload, key=SECRET):
    h = b64(json.dumps(header, separators=(",", ":")).encode())
    p = b64(json.dumps(payload, separators=(",", ":")).encode())
    sig = hmac.new(key, h + b"." + p, hashlib.sha256).digest()
    return h + b"." + p + b"." + b64(sig)

good = {"sub": "alice", "exp": NOW + 600, "nbf": NOW - 5, "iat": NOW - 5,
        "projects": ["p1", "p2"], "agents": ["a1"]}
strict = dict(good, iss="https://idp.example", aud=["x", "ringside"])
hdr = {"alg": "HS256", "typ": "JWT"}
seeds = {
    "hs_valid": b"\x00" + token(hdr, good),
    "hs_wildcard": b"\x00" + token(hdr, dict(good, projects="*", agents="*")),
    "hs_none": b"\x00" + token({"alg": "none"}, good)[: -43],
    "hs_expired": b"\x00" + token(hdr, dict(good, exp=NOW - 1)),
    "hs_badsig": b"\x00" + token(hdr, good, b"another-secret-0123456789abcdefgh"),
    "rs_hs_confusion": b"\x01" + token(hdr, good),
    "rs_shape": b"\x01" + token({"alg": "RS256", "typ": "JWT"}, good)[:-43] + b"A" * 342,
    "es_shape": b"\x02" + token({"alg": "ES256", "typ": "JWT"}, good)[:-43] + b"A" * 86,
    "strict_valid": b"\x03" + token(hdr, strict),
    "strict_badaud": b"\x03" + token(hdr, dict(strict, aud="other")),
    "claims_valid": b"\x04" + json.dumps(hdr).encode() + b"\n" + json.dumps(strict).encode(),
    "claims_lists": b"\x04" + b'{"alg":"HS256"}\n{"sub":"u","exp":1.9e9,"projects":["b","a","b"],"agents":[]}',
    "claims_bad": b"\x04" + b'{"alg":"HS256","crit":["x"]}\n{"sub":"u","projects":[1,"a b"],"exp":"x"}',
    "malformed": b"\x00" + b"a.b.c.d",
}
os.makedirs("seeds", exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join("seeds", name), "wb") as f:
        f.write(data)
