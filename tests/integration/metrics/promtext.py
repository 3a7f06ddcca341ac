"""A strict parser for the Prometheus text exposition format 0.0.4, as Ringside must emit it.

parse(text) returns {family name: Family} or raises ExpositionError naming the line.  Beyond the
format itself it enforces the house rules of REQUIREMENTS F2 / issue 10:
- every family has exactly one # HELP and one # TYPE line, both before its first sample;
- a family's samples are contiguous (no interleaving with another family);
- metric and label names are valid, label values correctly quoted and escaped, no duplicate label
  names in a sample and no duplicate series;
- counter families end in _total; their samples are finite and non-negative;
- histograms: per label set, buckets in increasing `le` order, cumulative (non-decreasing), the last
  one le="+Inf", and _count equal to the +Inf bucket, with a _sum;
- the text ends with a newline.
"""
import math
import re

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class ExpositionError(ValueError):
    def __init__(self, lineno, line, why):
        super().__init__("line %d: %s: %r" % (lineno, why, line))


class Family:
    def __init__(self, name):
        self.name = name
        self.help = None
        self.type = None
        self.samples = []  # (sample name, labels dict, value)

    def value(self, **labels):
        """The value of the sample named like the family with exactly these labels, or None."""
        for name, l, v in self.samples:
            if name == self.name and l == labels:
                return v
        return None


def _value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.match(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z", s):
        raise ValueError(s)
    return float(s)


def _labels(s, pos, lineno, line):
    """Parses {a="b",…} starting at s[pos] == '{'; returns (dict, index after '}')."""
    labels = {}
    i = pos + 1
    while True:
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(s, i)
        if not m:
            raise ExpositionError(lineno, line, "bad label name at column %d" % i)
        name = m.group(0)
        if name.startswith("__"):
            raise ExpositionError(lineno, line, "label name %s is reserved" % name)
        if name in labels:
            raise ExpositionError(lineno, line, "duplicate label %s" % name)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ExpositionError(lineno, line, 'expected =" after label %s' % name)
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise ExpositionError(lineno, line, "unterminated label value")
            ch = s[i]
            if ch == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ExpositionError(lineno, line, "bad escape \\%s in label value" % nxt)
                val.append("\n" if nxt == "n" else nxt)
                i += 2
            elif ch == '"':
                i += 1
                break
            elif ch == "\n":
                raise ExpositionError(lineno, line, "raw newline in label value")
            else:
                val.append(ch)
                i += 1
        labels[name] = "".join(val)
        if i < len(s) and s[i] == ",":
            i += 1
            continue
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        raise ExpositionError(lineno, line, "expected , or } after label value")


def _family_of(sample, families):
    """The family a sample name belongs to (histogram/summary suffixes map to their base)."""
    if sample in families:
        return families[sample]
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix):
            base = families.get(sample[:-len(suffix)])
            if base is not None and base.type in ("histogram", "summary"):
                if suffix == "_bucket" and base.type != "histogram":
                    return None
                return base
    return None


def parse(text, counter_name_exceptions=()):
    if not text.endswith("\n"):
        raise ExpositionError(text.count("\n") + 1, text[-80:], "text does not end with a newline")
    families = {}
    order = []          # families in order of first appearance of a sample
    current = None      # family whose samples we are in
    finished = set()    # families whose sample block ended
    series = set()
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[0] == "#" and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME.match(name):
                    raise ExpositionError(lineno, line, "bad metric name")
                fam = families.setdefault(name, Family(name))
                if fam.samples:
                    raise ExpositionError(lineno, line, "%s after the family's samples" % parts[1])
                if parts[1] == "HELP":
                    if fam.help is not None:
                        raise ExpositionError(lineno, line, "second HELP")
                    fam.help = parts[3] if len(parts) > 3 else ""
                else:
                    if fam.type is not None:
                        raise ExpositionError(lineno, line, "second TYPE")
                    t = parts[3] if len(parts) > 3 else ""
                    if t not in TYPES:
                        raise ExpositionError(lineno, line, "unknown type %r" % t)
                    fam.type = t
                    if t == "counter" and not name.endswith("_total") and \
                            name not in counter_name_exceptions:
                        raise ExpositionError(lineno, line, "counter name does not end in _total")
            continue
        m = re.match(r"([^{\s]+)", line)
        if not m or not METRIC_NAME.match(m.group(1)):
            raise ExpositionError(lineno, line, "bad metric name")
        sname = m.group(1)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _labels(line, i, lineno, line)
        rest = line[i:]
        if not rest.startswith(" ") or rest.startswith("  "):
            raise ExpositionError(lineno, line, "expected one space before the value")
        fields = rest[1:].split(" ")
        if len(fields) not in (1, 2) or fields[-1] == "":
            raise ExpositionError(lineno, line, "expected VALUE [TIMESTAMP]")
        try:
            value = _value(fields[0])
        except ValueError:
            raise ExpositionError(lineno, line, "bad value %r" % fields[0]) from None
        if len(fields) == 2 and not re.match(r"-?\d+\Z", fields[1]):
            raise ExpositionError(lineno, line, "bad timestamp")
        fam = _family_of(sname, families)
        if fam is None or fam.type is None or fam.help is None:
            raise ExpositionError(lineno, line, "sample without HELP and TYPE before it")
        if fam is not current:
            if fam.name in finished:
                raise ExpositionError(lineno, line, "samples of %s are not contiguous" % fam.name)
            if current is not None:
                finished.add(current.name)
            current = fam
            order.append(fam.name)
        if fam.type in ("histogram", "summary") and sname == fam.name and fam.type == "histogram":
            raise ExpositionError(lineno, line, "histogram sample without _bucket/_sum/_count")
        if fam.type == "histogram" and sname.endswith("_bucket"):
            if "le" not in labels:
                raise ExpositionError(lineno, line, "bucket without le")
            try:
                _value(labels["le"])
            except ValueError:
                raise ExpositionError(lineno, line, "bad le %r" % labels["le"]) from None
        key = (sname, tuple(sorted(labels.items())))
        if key in series:
            raise ExpositionError(lineno, line, "duplicate series")
        series.add(key)
        if fam.type == "counter" and (math.isnan(value) or value < 0 or math.isinf(value)):
            raise ExpositionError(lineno, line, "counter value must be finite and >= 0")
        fam.samples.append((sname, labels, value))
    for fam in families.values():
        if fam.type is None or fam.help is None:
            raise ExpositionError(0, fam.name, "family lacks HELP or TYPE")
        if fam.type == "histogram":
            _check_histogram(fam)
    return families


def _check_histogram(fam):
    groups = {}
    for sname, labels, value in fam.samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if sname.endswith("_bucket"):
            g["buckets"].append((_value(labels["le"]), value))
        elif sname.endswith("_sum"):
            g["sum"] = value
        elif sname.endswith("_count"):
            g["count"] = value
    if not groups:
        return
    for rest, g in groups.items():
        b = g["buckets"]
        where = "%s%s" % (fam.name, dict(rest) or "")
        if not b:
            raise ExpositionError(0, where, "histogram without buckets")
        les = [le for le, _ in b]
        if les != sorted(les) or len(set(les)) != len(les):
            raise ExpositionError(0, where, "bucket bounds not strictly increasing: %r" % les)
        if les[-1] != math.inf:
            raise ExpositionError(0, where, "last bucket is not le=\"+Inf\"")
        counts = [c for _, c in b]
        if any(c2 < c1 for c1, c2 in zip(counts, counts[1:])):
            raise ExpositionError(0, where, "buckets not cumulative: %r" % counts)
        if g["count"] is None or g["sum"] is None:
            raise ExpositionError(0, where, "histogram without _count or _sum")
        if g["count"] != counts[-1]:
            raise ExpositionError(0, where, "_count %r != +Inf bucket %r" % (g["count"], counts[-1]))
