"""``make_env(cfg, seed)``: the one env factory. A suite is a config dataclass + env class."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from .atari import AtariConfig, AtariEnv, atari_games
from .classic import GAMES as CLASSIC_GAMES
from .classic import ClassicConfig, ClassicEnv
from .minatar import GAMES as MINATAR_GAMES
from .minatar import MinAtarConfig, MinAtarEnv
from .shift import ShiftingEnv

SUITES = {
    "atari": (AtariConfig, AtariEnv, atari_games),
    "minatar": (MinAtarConfig, MinAtarEnv, lambda: list(MINATAR_GAMES)),
    "classic": (ClassicConfig, ClassicEnv, lambda: list(CLASSIC_GAMES)),
}


class UnknownChoice(ValueError):
    """A name that is not one of the valid choices; the message lists them."""


def valid_games(suite: str) -> list[str]:
    return list(SUITES[suite][2]())


def check_game(suite: str, game: str) -> str:
    """Return the canonical spelling of ``game`` or raise UnknownChoice naming the valid ones."""
    games = valid_games(suite)
    by_lower = {g.lower(): g for g in games}
    if game.lower() not in by_lower:
        raise UnknownChoice(f"unknown {suite} game '{game}'; valid: {', '.join(games)}")
    return by_lower[game.lower()]


def make_env(cfg, seed: int):
    """Build the batched env of ``cfg.suite`` (an OmegaConf node or a suite config dataclass),
    as a sequence of tasks when ``cfg.shift.kind`` is not none (envs/shift.py)."""
    config_cls, env_cls, _ = SUITES[cfg.suite]
    if not isinstance(cfg, config_cls):
        cfg = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else config_cls(**dict(cfg))
    cfg.game = check_game(cfg.suite, cfg.game)
    if cfg.shift.kind != "none":
        return ShiftingEnv(env_cls, cfg, seed)
    return env_cls(cfg, seed)
