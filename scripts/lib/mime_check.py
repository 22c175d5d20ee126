#!/usr/bin/env python3
"""Describe a message's MIME structure as JSON, for tests to assert on.

    $SMTP_TOOLS_PYTHON scripts/lib/mime_check.py MESSAGE.eml      (or - for stdin)

Parses with Python's email package (policy.default) and prints one JSON object:
  has_text, has_html   bool: a text/plain / text/html body part exists (attachments do not count)
  headers              {lowercased name: decoded value} for List-Unsubscribe, List-Unsubscribe-Post,
                       Message-ID, From, To, Subject, Reply-To and every X-Hermetic-* header present
                       (the first occurrence when repeated)
  duplicate_headers    lowercased names among those that occur more than once (should be [])
  text, html           the decoded text/plain and text/html body, line ends as \n (null when absent)
  content_type         the top-level content type, e.g. "multipart/alternative"
  parts                content types of every part, depth first, e.g.
                       ["multipart/alternative", "text/plain", "text/html"]
  defects              parser defects found anywhere in the message (should be [])
Exits 0 when the message parsed (even with defects), 2 on usage or read errors.
"""

import json
import sys
from email import policy
from email.parser import BytesParser

WANTED = ["list-unsubscribe", "list-unsubscribe-post", "message-id", "from", "to", "subject", "reply-to"]


def body_of(msg, subtype):
    part = msg.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != "text/" + subtype:
        return None
    # The source has CRLF line ends (as sent over SMTP): give tests plain \n.
    return part.get_content().replace("\r\n", "\n")


def describe(raw):
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    names = [k.lower() for k in msg.keys()]
    wanted = [n for n in dict.fromkeys(names) if n in WANTED or n.startswith("x-hermetic-")]
    headers = {n: str(msg[n]) for n in wanted}
    text = body_of(msg, "plain")
    html = body_of(msg, "html")
    defects = []
    parts = []
    for part in msg.walk():
        parts.append(part.get_content_type())
        defects.extend("%s: %s" % (type(d).__name__, d) for d in part.defects)
    return {
        "has_text": text is not None,
        "has_html": html is not None,
        "headers": headers,
        "duplicate_headers": sorted(n for n in wanted if names.count(n) > 1),
        "text": text,
        "html": html,
        "content_type": msg.get_content_type(),
        "parts": parts,
        "defects": defects,
    }


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print("usage: mime_check.py MESSAGE.eml|-", file=sys.stderr)
        sys.exit(2)
    try:
        if sys.argv[1] == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(sys.argv[1], "rb") as f:
                raw = f.read()
    except OSError as e:
        print("mime_check.py: %s" % e, file=sys.stderr)
        sys.exit(2)
    json.dump(describe(raw), sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
