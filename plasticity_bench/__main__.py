"""``python -m plasticity_bench COMMAND [arguments]`` (or ``plasticity-bench COMMAND ...``):

  run      one run: env=minatar agent=dqn intervention=ln_l2 [key=value ...]
  sweep    an experiment's runs: --multirun +experiment=NAME (--plan / --check list or check them)
  shifts   one supervised task sequence: task=label_reset intervention=ln_l2 [key=value ...]
  figures  IQM tables and figures from a folder of runs: RUNS OUT [options]
  bench    speed and memory on this machine, one table

``COMMAND -h`` describes one. The make targets (``make help``) call these."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": "plasticity_bench.runner.__main__",
    "sweep": "plasticity_bench.runner.sweep",
    "shifts": "plasticity_bench.shifts.__main__",
    "figures": "plasticity_bench.analysis.__main__",
    "bench": "plasticity_bench.bench.__main__",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
