"""DQN (Mnih et al. 2015), vectorized over a batch of envs.

Defaults are the Atari reference (CleanRL-style, see docs/science.md); the MinAtar preset
(Young & Tian 2019) is ``configs/preset/dqn_minatar.yaml``. Read top to bottom: config ->
networks and optimizer -> acting -> storing and learning -> checkpoint state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from plasticity_bench.agents import register
from plasticity_bench.agents.base import EnvSpec, average_updates
from plasticity_bench.agents.replay import ReplayBuffer
from plasticity_bench.core.ranges import ranged
from plasticity_bench.nets.learner import Learner
from plasticity_bench.nets.networks import build_network, eval_mode
from plasticity_bench.nets.optim import CenteredRMSprop


@dataclass
class DQNConfig:
    name: str = "dqn"
    """Registry name."""
    lr: float = ranged(1e-4, gt=0)
    """Learning rate."""
    optimizer: str = ranged("adam", choices=("adam", "rmsprop"))
    """adam | rmsprop (centred, as in the MinAtar paper)."""
    optimizer_eps: float = ranged(1e-8, gt=0)
    """Adam/RMSProp epsilon (MinAtar: 0.01, the paper's minimum squared gradient)."""
    rmsprop_alpha: float = ranged(0.95, ge=0, lt=1)
    """RMSProp squared-gradient momentum."""
    buffer_size: int = ranged(1_000_000, ge=1)
    """Replay capacity in transitions (frames are stored once)."""
    batch_size: int = ranged(32, ge=1)
    """Transitions per update."""
    gamma: float = ranged(0.99, gt=0, le=1)
    """Discount."""
    n_step: int = ranged(1, ge=1)
    """n-step returns (1 = plain DQN)."""
    learning_starts: int = ranged(80_000, ge=0)
    """Agent steps before the first update."""
    updates_per_step: float = ranged(0.25, gt=0)
    """Updates per agent step (0.25 = one update every 4 steps, whatever the number of envs)."""
    target_update_interval: int = ranged(1000, ge=1)
    """Updates between target network syncs."""
    tau: float = ranged(1.0, gt=0, le=1)
    """Target update: 1.0 = hard copy, < 1 = Polyak averaging at every sync."""
    double_dqn: bool = False
    """Double DQN targets. Off by default to match the reference DQN the presets reproduce."""
    loss: str = ranged("mse", choices=("mse", "huber"))
    """mse (CleanRL Atari) | huber (MinAtar paper)."""
    max_grad_norm: float = ranged(0.0, ge=0)
    """Clip the gradient norm to this; 0 = no clipping."""
    epsilon_start: float = ranged(1.0, ge=0, le=1)
    """Initial exploration rate."""
    epsilon_end: float = ranged(0.01, ge=0, le=1)
    """Final exploration rate."""
    exploration_start: int = ranged(0, ge=0)
    """Agent step at which epsilon starts to decay."""
    exploration_steps: int = ranged(1_000_000, ge=0)
    """Agent steps over which epsilon decays linearly."""
    reward_clip: bool = True
    """Train on sign(reward) (Atari); returns.csv always holds raw scores."""
    replay_at_shift: str = ranged("keep", choices=("keep", "clear"))
    """At a task switch (env.shift): keep the replay buffer, with rewards as they were learned
    (C-CHAIN's Continual MinAtar keeps it) | clear it (updates wait until it can sample again)."""
    arch: str = ranged("auto", choices=("auto", "nature_cnn", "minatar_cnn", "mlp"))
    """Network: auto (Nature CNN for 84x84 pixels, MinAtar CNN for 10x10 grids) | nature_cnn |
    minatar_cnn | mlp."""


@register("dqn")
class DQN(Learner):
    Config = DQNConfig
    batches_on_host = True  # (the replay is numpy: a population stacks its seeds' batches there)
    quick_overrides = ("agent.learning_starts=100", "agent.batch_size=4", "agent.buffer_size=500")

    def __init__(self, cfg: DQNConfig, spec: EnvSpec, interventions, device: torch.device, seed: int):
        self.cfg, self.device, self.num_envs, self.num_actions = cfg, device, spec.num_envs, spec.num_actions
        self.interventions = interventions
        self.rng = np.random.default_rng(seed)
        obs_shape, obs_dtype, num_envs = spec.obs_shape, spec.obs_dtype, spec.num_envs

        obs_scale = 1 / 255 if np.dtype(obs_dtype) == np.uint8 else 1.0
        factory = lambda **kw: build_network(obs_shape, spec.num_actions, cfg.arch, obs_scale, **kw)  # noqa: E731
        self.values = interventions.value_head()  # scalar Q outputs, or categorical (two_hot, ...)
        self.regression = F.mse_loss if cfg.loss == "mse" else F.smooth_l1_loss
        self.network = interventions.build(factory).to(device)
        self.target = interventions.build(factory).to(device)
        self.target.load_state_dict(self.network.state_dict())
        self.target.requires_grad_(False)
        self.target.eval()  # never trained: a spectral_norm target must not run power iterations
        self.optimizer = self.make_optimizer()

        stack = obs_shape[0] if np.dtype(obs_dtype) == np.uint8 else 1  # pixels: dedupe frames
        self.new_replay = lambda: ReplayBuffer(
            cfg.buffer_size,
            num_envs,
            obs_shape,
            obs_dtype,
            stack,
            cfg.gamma,  # noqa: E731
            cfg.n_step,
        )
        self.replay = self.new_replay()
        self.refilling = False  # a cleared buffer: no update until it can sample
        self.update_credit = 0.0  # fractional updates owed (updates_per_step x agent steps)
        self.updates = 0
        # the agent step this agent started at: 0, or the last fresh start (interventions.reset with
        # layers=0), from which exploration and learning_starts count; and the last step it stored
        self.start_step, self.clock = 0, 0
        self.restarts = 0  # fresh starts so far (the runner re-anchors the probes' dist_from_init)

    @staticmethod
    def check_config(cfg) -> None:
        """What the field ranges cannot say: a batch is drawn from what the buffer can hold."""
        batch, buffer = cfg["agent"]["batch_size"], cfg["agent"]["buffer_size"]
        if batch > buffer:
            raise ValueError(
                f"agent.batch_size={batch:,} is larger than agent.buffer_size={buffer:,}: "
                "a batch is drawn from the buffer"
            )

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Built from the live parameters; interventions that replace parameters call it again."""
        params = [p for p in self.network.parameters() if p.requires_grad]
        if self.cfg.optimizer == "adam":
            return torch.optim.Adam(
                params, lr=self.cfg.lr, eps=self.cfg.optimizer_eps, fused=self.device.type in ("cpu", "cuda")
            )
        if self.cfg.optimizer == "rmsprop":
            return CenteredRMSprop(
                params, lr=self.cfg.lr, alpha=self.cfg.rmsprop_alpha, eps=self.cfg.optimizer_eps
            )
        raise ValueError(f"unknown optimizer '{self.cfg.optimizer}'; valid: adam, rmsprop")

    # ---- acting -------------------------------------------------------------------------
    def epsilon(self, step: int) -> float:
        c = self.cfg
        frac = min(max(step - self.start_step - c.exploration_start, 0) / max(c.exploration_steps, 1), 1.0)
        return c.epsilon_start + frac * (c.epsilon_end - c.epsilon_start)

    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        explore = self.exploring(step)
        if explore.all():  # the network runs only when some env acts greedily
            return self.epsilon_greedy(explore, None)
        with torch.inference_mode(), eval_mode(self.network):  # acting is not a training forward
            greedy = self.q_values(torch.as_tensor(obs, device=self.device)).argmax(1).cpu().numpy()
        return self.epsilon_greedy(explore, greedy)

    def exploring(self, step: int) -> np.ndarray:
        """Which envs act at random this step (epsilon-greedy's first draw)."""
        return self.rng.random(self.num_envs) < self.epsilon(step)

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """Q of every action (the expected value of a categorical head)."""
        return self.values.expected(self.network(obs))

    def epsilon_greedy(self, explore: np.ndarray, greedy: np.ndarray | None) -> np.ndarray:
        """Random actions where ``explore``, else the greedy ones (None: every env explores)."""
        if greedy is None:
            return self.rng.integers(self.num_actions, size=self.num_envs)
        if not explore.any():  # random actions are drawn only when an env explores: once epsilon has
            return greedy  # decayed, most steps skip that draw
        return np.where(explore, self.rng.integers(self.num_actions, size=self.num_envs), greedy)

    # ---- storing and learning -----------------------------------------------------------
    def observe(self, obs, actions, rewards, next_obs, terminated, truncated, step):
        return self.learn(self.remember(obs, actions, rewards, next_obs, terminated, truncated, step), step)

    def remember(self, obs, actions, rewards, next_obs, terminated, truncated, step) -> int:
        """Store the transition; returns how many updates are now due."""
        if self.cfg.reward_clip:
            rewards = np.sign(rewards)
        self.replay.add(obs, actions, rewards, next_obs, terminated, truncated)
        self.clock = step
        if step - self.start_step < self.cfg.learning_starts or step < self.cfg.n_step * self.num_envs:
            return 0  # (an n-step transition can be sampled once its env has taken n steps)
        if self.refilling:
            if not self.replay.can_sample():
                return 0
            self.refilling = False
        self.update_credit += self.num_envs * self.cfg.updates_per_step
        due = 0
        while self.update_credit >= 1.0:
            self.update_credit -= 1.0
            due += 1
        return due

    def learn(self, updates: int, step: int) -> dict:
        """``updates`` gradient updates; their metrics averaged (an interval intervention fires once)."""
        return average_updates([self.update(step) for _ in range(updates)])

    def task_switched(self) -> None:
        """A new task starts (env.shift): the replay is kept or cleared (``replay_at_shift``)."""
        if self.cfg.replay_at_shift == "clear":
            self.replay, self.refilling = self.new_replay(), True

    def restart(self) -> None:
        """A fresh agent starts here (interventions.reset, ``layers=0``), as a new agent would: a
        new, empty replay, and exploration (epsilon back to ``epsilon_start``) and learning_starts
        counting from this step."""
        self.replay, self.refilling, self.update_credit = self.new_replay(), True, 0.0
        self.start_step, self.restarts = self.clock, self.restarts + 1

    @torch.no_grad()
    def td_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``r + discount x Q_target(s', a*)``: the replay gives the n-step return r and gamma^k
        (0 after a termination); a* is the target network's argmax, or the online network's with
        Double DQN."""
        next_q = self.values.expected(self.target(batch["next_obs"]))
        if not self.cfg.double_dqn:
            return batch["rewards"] + batch["discounts"] * next_q.max(1).values
        with eval_mode(self.network):
            best = self.values.expected(self.network(batch["next_obs"])).argmax(1, keepdim=True)
        return batch["rewards"] + batch["discounts"] * next_q.gather(1, best).squeeze(1)

    def update(self, step: int) -> tuple[dict[str, torch.Tensor], dict]:
        """One gradient update: (its metrics, those of the interventions that acted after it)."""
        loss, metrics = self.loss(self.sample())
        grad_norm, acted = self.train_step(loss, step, self.cfg.max_grad_norm)
        return self.finish_update(loss, metrics, grad_norm), acted

    def sample(self, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """A batch from the replay (drawn with the agent's RNG), on ``device`` (the agent's)."""
        batch = self.replay.sample(self.cfg.batch_size, self.rng)
        return {k: torch.as_tensor(v, device=device or self.device) for k, v in batch.items()}

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Q(s, a) of the actions taken regressed on the TD target (a categorical head: cross
        entropy to the target projected on its support); and what the update logs of them."""
        target = self.td_target(batch)
        outputs = self.network(batch["obs"])
        loss = self.values.loss(outputs, target, batch["actions"], self.regression)
        with torch.no_grad():
            q = self.values.expected(outputs).gather(1, batch["actions"][:, None])
        return loss, {"q_mean": q.mean(), "targets": self.values.target_metrics(target)}

    def finish_update(self, loss: torch.Tensor, metrics: dict, grad_norm: torch.Tensor) -> dict:
        """After the step and the interventions that act after it: the target copies the
        network they left (Dopamine's order for ReDo); the update's metrics."""
        self.updates += 1
        if self.updates % self.cfg.target_update_interval == 0:
            self.sync_target()
        return {
            "loss": loss.detach(),
            "q_mean": metrics["q_mean"],
            "grad_norm": grad_norm,
            "epsilon": torch.tensor(self.epsilon(self.clock)),
            **metrics["targets"],
        }

    @torch.no_grad()
    def sync_target(self) -> None:
        """Hard copy, or Polyak averaging of the floating-point entries (integer and bool
        buffers, such as plasticity_injection's ``active`` flag, are copied)."""
        for t, p in zip(self.target.state_dict().values(), self.network.state_dict().values()):
            t.copy_(p) if self.cfg.tau >= 1.0 or not t.is_floating_point() else t.lerp_(p, self.cfg.tau)

    def prediction(self, outputs: torch.Tensor) -> torch.Tensor:
        """The scalar per input that the eNTK probe differentiates: Q(s, action 0), the expected
        Q for a categorical head."""
        return self.values.expected(outputs)[:, 0]

    def probe_inputs(self, batch_size: int, rng: np.random.Generator) -> torch.Tensor | None:
        """Observations from the replay buffer for the probes (drawn with the probe's RNG)."""
        if not self.replay.can_sample():
            return None
        return torch.as_tensor(self.replay.sample(batch_size, rng)["obs"], device=self.device)

    def truncate(self, obs: np.ndarray) -> None:
        """The episodes in progress end here (a resume that restarts the envs): each env's last
        transition is cut as a time limit, bootstrapping from its stored next observation."""
        self.replay.truncate()

    # ---- checkpoint state ---------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "network": self.network.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "replay": self.replay.state_dict(),
            "rng": self.rng.bit_generator.state,
            "update_credit": self.update_credit,
            "updates": self.updates,
            "refilling": self.refilling,
            "start_step": self.start_step,
            "clock": self.clock,
            "restarts": self.restarts,
        }

    def load_state_dict(self, state: dict) -> None:
        self.network.load_state_dict(state["network"])
        self.target.load_state_dict(state["target"])
        self.optimizer = self.make_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.replay.load_state_dict(state["replay"])
        self.rng.bit_generator.state = state["rng"]
        self.update_credit, self.updates = state["update_credit"], state["updates"]
        self.refilling = state.get("refilling", False)
        self.start_step, self.clock = state.get("start_step", 0), state.get("clock", 0)
        self.restarts = state.get("restarts", 0)
