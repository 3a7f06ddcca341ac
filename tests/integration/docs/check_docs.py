#!/usr/bin/python3
"""Documentation checks that keep the docs true to the code (REQUIREMENTS F1, F5).

  check_docs.py env-example   .env.example is exactly what `ringside --env-example` prints
  check_docs.py options       every option of `ringside --help` is in docs/operations.md's
                              configuration reference (same env name and default), and every
                              --flag the document mentions exists
  check_docs.py links         every relative link in README.md and docs/*.md resolves to a file
                              (and a #fragment to a heading of the target Markdown file)

Environment from ctest: RINGSIDE_BIN (build/bin), RINGSIDE_SRC (source root).
Exit status 0 when the check passes, 1 with one line per problem otherwise.
"""
import difflib
import glob
import os
import re
import subprocess
import sys

SRC = os.environ.get("RINGSIDE_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BIN = os.environ.get("RINGSIDE_BIN", os.path.join(SRC, "build", "bin"))

# Relative link targets known to be missing, each with the reason.  Listed targets are reported
# (not failed) while missing, and reported as stale once they exist.  Keep this list empty.
KNOWN_MISSING = {
    "docs/benchmarks.md": "README links it; the benchmark pages are docs/benchmarks-ipc.md and "
                          "docs/benchmarks-load.md (index page requested from the lead)",
    "docs/cluster.md": "docs/architecture.md links it for the cluster (Redis) design; not written yet",
}

# Flags of programs other than Ringside's that docs/operations.md may show in commands.
FOREIGN_FLAGS = set()  # none today; add e.g. "--max-time" together with the command using it


def run(args):
    r = subprocess.run(args, capture_output=True, timeout=10)
    if r.returncode != 0:
        sys.exit("%s exited %d: %s" % (" ".join(args), r.returncode, r.stderr.decode()))
    return r.stdout.decode()


def read(rel):
    with open(os.path.join(SRC, rel), encoding="utf-8") as f:
        return f.read()


# ---- .env.example ---------------------------------------------------------------------------

def check_env_example():
    want = run([os.path.join(BIN, "ringside"), "--env-example"])
    have = read(".env.example")
    if want == have:
        print("ok: .env.example matches `ringside --env-example` (%d lines)" % want.count("\n"))
        return []
    diff = difflib.unified_diff(have.splitlines(), want.splitlines(), ".env.example (committed)",
                                "ringside --env-example", lineterm="")
    return ["\n".join(diff), ".env.example is stale: regenerate it with "
            "`build/bin/ringside --env-example > .env.example`"]


# ---- options ----------------------------------------------------------------------------------

HELP_OPT = re.compile(r"^  (--[a-z][a-z0-9-]*)(?: (\S+))?\s{2,}(.*)$")
HELP_ENV = re.compile(r"^\s+\[env (RINGSIDE_[A-Z0-9_]+)(?:, default (.*))?\]$")


def parse_help(text):
    """Returns {flag: (env or None, default or None)} from `ringside --help`."""
    opts = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = HELP_OPT.match(line)
        if not m:
            continue
        env = default = None
        if i + 1 < len(lines):
            e = HELP_ENV.match(lines[i + 1])
            if e:
                env, default = e.group(1), e.group(2)
        opts[m.group(1)] = (env, default)
    return opts


def flags_of(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


def code_spans(cell):
    return re.findall(r"`([^`]*)`", cell)


def parse_reference(doc):
    """Rows of the configuration reference table: {flag: (env, default)}.  A row is
    | `--flag VALUE` | `RINGSIDE_X` | `default` or — | description |"""
    rows = {}
    dupes = []
    in_section = False
    for line in doc.splitlines():
        if line.startswith("## "):
            in_section = line.lower().startswith("## configuration")
            continue
        if not in_section or not line.startswith("| `--"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4:
            continue
        flag = code_spans(cells[0])[0].split()[0]
        env = (code_spans(cells[1]) or [None])[0]
        dflt = code_spans(cells[2])
        if flag in rows:
            dupes.append(flag)
        rows[flag] = (env, dflt[0] if dflt else None)
    return rows, dupes


def check_options():
    ringside = os.path.join(BIN, "ringside")
    help_text = run([ringside, "--help"])
    opts = parse_help(help_text)
    if len(opts) < 10:
        return ["could not parse `ringside --help` (found %d options)" % len(opts)]
    doc = read("docs/operations.md")
    rows, dupes = parse_reference(doc)
    errs = ["docs/operations.md: option %s has two rows" % d for d in dupes]
    for flag, (env, dflt) in sorted(opts.items()):
        if flag in ("--help", "--version", "--env-example"):
            if flag not in flags_of(doc):
                errs.append("docs/operations.md does not mention %s" % flag)
            continue
        if flag not in rows:
            errs.append("docs/operations.md: no configuration reference row for %s "
                        "(ringside --help lists it)" % flag)
            continue
        denv, ddflt = rows[flag]
        if denv != env:
            errs.append("docs/operations.md: %s env is %r, ringside --help says %r" % (flag, denv, env))
        if ddflt != dflt:
            errs.append("docs/operations.md: %s default is %r, ringside --help says %r"
                        % (flag, ddflt, dflt))
    for flag in sorted(rows):
        if flag not in opts:
            errs.append("docs/operations.md documents %s, which `ringside --help` does not list" % flag)
    # Every --flag the document mentions anywhere must belong to one of the project's programs.
    known = set(opts) | FOREIGN_FLAGS
    known |= flags_of(run([ringside, "token", "--help"]))
    for tool in ("ringside-pub", "ringside-run"):
        known |= flags_of(run([os.path.join(BIN, tool), "--help"]))
    for flag in sorted(flags_of(doc) - known):
        errs.append("docs/operations.md mentions %s, which no Ringside program accepts" % flag)
    if not errs:
        print("ok: %d options documented in docs/operations.md with their env names and defaults"
              % len(rows))
    return errs


# ---- links ------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!\!)\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE = re.compile(r"!\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)


def strip_code(text):
    """Removes fenced code blocks and inline code spans (links in code are not links)."""
    out, fence = [], None
    for line in text.splitlines():
        m = re.match(r"^\s{0,3}(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
            out.append("")
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
            continue
        out.append(re.sub(r"`+[^`]*`+", "", line))
    return "\n".join(out)


def slug(heading):
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    h = re.sub(r"`", "", heading.strip().lower())
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    with open(path, encoding="utf-8") as f:
        for line in strip_code_keep_headings(f.read()):
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if not m:
                continue
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else "%s-%d" % (s, n))
    return out


def strip_code_keep_headings(text):
    fence = None
    for line in text.splitlines():
        m = re.match(r"^\s{0,3}(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        yield line


def check_links(root=SRC, known_missing=None):
    known_missing = KNOWN_MISSING if known_missing is None else known_missing
    files = [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    errs, notes, n = [], [], 0
    for path in files:
        rel_file = os.path.relpath(path, root)
        text = strip_code(open(path, encoding="utf-8").read())
        targets = LINK.findall(text) + IMAGE.findall(text) + REFDEF.findall(text)
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # http:, https:, mailto: …: not checked offline
            n += 1
            file_part, _, frag = target.partition("#")
            dest = path if file_part == "" else os.path.normpath(
                os.path.join(os.path.dirname(path), file_part))
            dest_rel = os.path.relpath(dest, root)
            if dest_rel.startswith(".."):
                errs.append("%s: link %s leaves the repository" % (rel_file, target))
                continue
            if not os.path.exists(dest):
                if dest_rel in known_missing:
                    notes.append("note: %s: link %s is missing (known: %s)"
                                 % (rel_file, target, known_missing[dest_rel]))
                else:
                    errs.append("%s: link %s: no such file %s" % (rel_file, target, dest_rel))
                continue
            if frag and dest.endswith(".md") and frag not in anchors(dest):
                errs.append("%s: link %s: %s has no heading with anchor #%s"
                            % (rel_file, target, dest_rel, frag))
    for rel in sorted(known_missing):
        if os.path.exists(os.path.join(root, rel)):
            notes.append("note: %s exists now: remove it from KNOWN_MISSING in %s" % (rel, __file__))
    for line in notes:
        print(line)
    if not errs:
        print("ok: %d relative links in %d files resolve" % (n, len(files)))
    return errs


def check_links_selftest():
    """The link checker itself: a tree with good and bad links gives exactly the bad ones."""
    import tempfile
    with tempfile.TemporaryDirectory() as root:
        os.mkdir(os.path.join(root, "docs"))
        with open(os.path.join(root, "README.md"), "w") as f:
            f.write("[a](docs/a.md) [b](docs/missing.md) [c](https://x.invalid/y) `[d](nope.md)`\n"
                    "```\n[e](nope2.md)\n```\n[f](docs/a.md#second-part) [g](docs/a.md#nope)\n"
                    "[h]: docs/gone.md\n")
        with open(os.path.join(root, "docs", "a.md"), "w") as f:
            f.write("# A\n## Second part\n[back](../README.md) [self](#a) [up](../../x.md)\n")
        got = check_links(root, {})
    want = ["README.md: link docs/missing.md: no such file docs/missing.md",
            "README.md: link docs/a.md#nope: docs/a.md has no heading with anchor #nope",
            "README.md: link docs/gone.md: no such file docs/gone.md",
            "docs/a.md: link ../../x.md leaves the repository"]
    if sorted(got) != sorted(want):
        return ["link checker self-test: got %r, want %r" % (got, want)]
    print("ok: link checker finds exactly the %d planted bad links" % len(want))
    return []


def main():
    checks = {"env-example": check_env_example, "options": check_options, "links": check_links,
              "links-selftest": check_links_selftest}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        sys.exit("usage: check_docs.py %s" % "|".join(checks))
    errs = checks[sys.argv[1]]()
    for e in errs:
        print(e)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
