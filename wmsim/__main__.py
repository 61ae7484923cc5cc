"""``python -m wmsim``: the ``wmsim`` command line, as the console script runs it (``agents.cli``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    try:
        from agents.cli import main as cli
    except ModuleNotFoundError as exc:  # an install with only some extras (e.g. wmsim[onnx])
        print(
            f"wmsim: the command line needs the training extras ({exc}): pip install 'wmsim[all]'",
            file=sys.stderr,
        )
        return 1
    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
