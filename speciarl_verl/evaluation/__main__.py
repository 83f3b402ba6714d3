"""``python -m speciarl_verl.evaluation OUT_DIR``: the report tour on the shipped recorded predictions."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from speciarl_verl.evaluation.report_tour import report_tour


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m speciarl_verl.evaluation OUT_DIR", file=sys.stderr)
        return 2
    print(report_tour(args[0]).read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
