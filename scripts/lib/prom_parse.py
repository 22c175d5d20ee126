#!/usr/bin/env python3
"""Parse a Prometheus text-format scrape with the reference Python client's parser
(prometheus_client.parser.text_string_to_metric_families) and print it as JSON, so tests can check
/metrics with an implementation independent of ours.

Usage: prom_parse.py FILE   (FILE holds the scrape body; '-' reads standard input)

Exits non-zero, naming the problem, when the parser refuses the text or when the text breaks the
format's rules the parser does not itself enforce: a family described twice, a sample line not of
its family, histogram buckets that are not cumulative or lack le="+Inf" equal to _count.
Output: [{"name", "type", "help", "samples": [{"name", "labels", "value"}]}].
"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "-"
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    if text and not text.endswith("\n"):
        sys.exit("the scrape does not end with a line feed")
    families = []
    seen = set()
    for fam in text_string_to_metric_families(text):
        if fam.name in seen:
            sys.exit(f"family {fam.name} appears twice")
        seen.add(fam.name)
        samples = []
        for s in fam.samples:
            if not s.name.startswith(fam.name):
                sys.exit(f"sample {s.name} is not of family {fam.name}")
            samples.append({"name": s.name, "labels": dict(s.labels), "value": s.value})
        if fam.type == "histogram":
            check_histogram(fam.name, samples)
        families.append({"name": fam.name, "type": fam.type, "help": fam.documentation, "samples": samples})
    json.dump(families, sys.stdout)


def check_histogram(name, samples):
    series = {}
    for s in samples:
        labels = {k: v for k, v in s["labels"].items() if k != "le"}
        key = json.dumps(labels, sort_keys=True)
        entry = series.setdefault(key, {"buckets": [], "count": None})
        if s["name"] == name + "_bucket":
            entry["buckets"].append((float(s["labels"]["le"]), s["value"]))
        elif s["name"] == name + "_count":
            entry["count"] = s["value"]
    for key, e in series.items():
        b = sorted(e["buckets"])
        if not b or not math.isinf(b[-1][0]):
            sys.exit(f"histogram {name}{key} has no le=\"+Inf\" bucket")
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            sys.exit(f"histogram {name}{key} buckets are not cumulative: {b}")
        if e["count"] is None or b[-1][1] != e["count"]:
            sys.exit(f"histogram {name}{key}: le=\"+Inf\" {b[-1][1]} is not _count {e['count']}")


if __name__ == "__main__":
    main()
