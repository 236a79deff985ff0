"""``python -m plasticity_bench shifts task=label_reset intervention=ln_l2 seed=0 [key=value ...]``:
one shifts run (keys: shifts/train.py ShiftsConfig). Bad input -> one line on stderr, exit 2."""

from __future__ import annotations

import sys

from plasticity_bench.runner.store import RunError
from plasticity_bench.shifts.train import ShiftsRun, config_from


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    try:
        cfg = config_from(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    run = ShiftsRun(cfg)
    try:
        code = run.train()
    except RunError as error:  # as for the RL runner: another config, a corrupt checkpoint, ...
        print(f"error: {error}", file=sys.stderr)
        return 1
    if code == 0:
        print(f"logs in {run.dir}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
