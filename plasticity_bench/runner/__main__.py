"""``python -m plasticity_bench run [hydra overrides]``: one run. Bad input -> one line on stderr, exit 2."""

from __future__ import annotations

import sys

from plasticity_bench.runner.config import ConfigError, compose_config
from plasticity_bench.runner.loop import Run, RunError
from plasticity_bench.runner.population import Population


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(
            __doc__.strip()
            + "\nExample: python -m plasticity_bench run env=minatar agent=dqn env.game=breakout seed=1"
        )
        return 0
    try:
        cfg = compose_config(argv)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return (Population(cfg) if cfg.population > 1 else Run(cfg)).train()
    except ConfigError as error:  # a population that does not fit in memory
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
