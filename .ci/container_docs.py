#!/usr/bin/env python3
"""Holds docs/staging-container.md's code excerpts to the files CI runs.

A fenced code block right after a line `<!-- snippet: PATH -->` must appear in PATH
verbatim (as consecutive lines), so the page cannot drift from the compose file, the
manifest and the Testcontainers examples that .ci/container runs. Prints one line; exits
non-zero naming the first excerpt that is not in its file, or if the page has none.
"""

import re
import sys

MARKER = re.compile(r"^<!-- snippet: (\S+) -->$")


def excerpts(lines):
    for i, line in enumerate(lines):
        match = MARKER.match(line)
        if not match:
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            raise SystemExit(f"line {i + 1}: a snippet marker not followed by a code block")
        end = lines.index("```", i + 2)
        yield i + 1, match.group(1), "\n".join(lines[i + 2 : end]) + "\n"


def main(page):
    with open(page) as f:
        lines = f.read().splitlines()
    found = list(excerpts(lines))
    if not found:
        raise SystemExit(f"{page}: no excerpt marked with its file")
    for line, path, text in found:
        with open(path) as f:
            if text not in f.read():
                raise SystemExit(f"{page}:{line}: the excerpt is not in {path} as it is now")
    print(f"{page}: {len(found)} excerpts, each the text of its file ({', '.join(p for _, p, _ in found)})")


if __name__ == "__main__":
    main(sys.argv[1])
