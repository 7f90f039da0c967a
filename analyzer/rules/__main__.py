"""`python -m analyzer.rules --write-docs docs/rules`: regenerate the rule pages."""

from __future__ import annotations

import sys

from analyzer.rules import write_docs


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--write-docs":
        for p in write_docs(argv[1]):
            print(p)
        return 0
    print("usage: python -m analyzer.rules --write-docs DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
