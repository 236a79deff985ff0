"""PPO (Schulman et al. 2017) for discrete actions, CleanRL-style, vectorized over a batch of envs.

Defaults are CleanRL's EnvPool Atari reference (see docs/science.md); the MinAtar preset is
``configs/preset/ppo_minatar.yaml``. One network: the body's features feed a head whose outputs
are the policy logits followed by the value (one scalar, or ``bins`` logits when an intervention
makes the critic categorical), so probes and interventions see the body/head split as for DQN.
Read top to bottom: config -> network and optimizer -> acting -> rollout and GAE -> update ->
checkpoint state.

Episode ends: a terminated step cuts the return; a truncated one (time limit) is bootstrapped
with the value of its true final observation, added to its reward before the chain is cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from plasticity_bench.agents import register
from plasticity_bench.agents.base import EnvSpec, average_updates
from plasticity_bench.agents.rollout import Rollout
from plasticity_bench.core.ranges import ranged
from plasticity_bench.nets.learner import Learner
from plasticity_bench.nets.networks import build_network, eval_mode


@dataclass
class PPOConfig:
    name: str = "ppo"
    """Registry name."""
    lr: float = ranged(2.5e-4, gt=0)
    """Adam learning rate (at the start, when annealed)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over ``anneal_steps``."""
    anneal_steps: int = ranged(10_000_000, ge=1)
    """Agent steps of the decay (configs/agent/ppo.yaml sets it to the run's total_steps)."""
    adam_eps: float = ranged(1e-5, gt=0)
    """Adam epsilon."""
    num_steps: int = ranged(128, ge=1)
    """Rollout length per env; a rollout is num_steps x num_envs transitions."""
    num_minibatches: int = ranged(4, ge=1)
    """Minibatches per epoch."""
    update_epochs: int = ranged(4, ge=1)
    """Passes over each rollout."""
    gamma: float = ranged(0.99, gt=0, le=1)
    """Discount."""
    gae_lambda: float = ranged(0.95, ge=0, le=1)
    """GAE lambda."""
    clip_coef: float = ranged(0.1, gt=0)
    """Policy ratio clip (and value clip, when on)."""
    clip_value: bool = True
    """Clip the value update around the rollout's values (scalar critic only)."""
    ent_coef: float = ranged(0.01, ge=0)
    """Entropy bonus."""
    vf_coef: float = ranged(0.5, ge=0)
    """Value loss weight."""
    max_grad_norm: float = ranged(0.5, ge=0)
    """Clip the gradient norm to this; 0 = no clipping."""
    norm_adv: bool = True
    """Normalise advantages (over ``norm_adv_over``)."""
    norm_adv_over: str = ranged("minibatch", choices=("minibatch", "rollout"))
    """minibatch (CleanRL) | rollout (once per rollout, before the minibatches: TRAC, C-CHAIN)."""
    value_target: str = ranged("gae", choices=("gae", "discounted"))
    """The critic's target: gae (the GAE lambda-return, CleanRL) | discounted (the discounted sum of
    the rollout's rewards, bootstrapped only where an episode is cut or the rollout ends: TRAC,
    C-CHAIN). The advantages are GAE's either way."""
    reward_clip: bool = True
    """Train on sign(reward) (Atari); returns.csv always holds raw scores."""
    reward_scale: float = ranged(1.0, gt=0)
    """Train on reward x this (after clipping); returns.csv always holds raw scores."""
    arch: str = ranged("auto", choices=("auto", "nature_cnn", "minatar_cnn", "mlp"))
    """Network: auto (Nature CNN for 84x84 pixels, MinAtar CNN for 10x10 grids) | nature_cnn |
    minatar_cnn | mlp."""
    activation: str = ranged("relu", choices=("relu", "leaky_relu"))
    """Hidden nonlinearity: relu | leaky_relu (slope 0.1). An intervention (crelu) may replace it."""
    separate_networks: bool = False
    """A policy network and a value network that share nothing (arch=mlp), instead of one body
    under both heads; built as one module of two towers (nets.networks, ``towers``)."""


@register("ppo")
class PPO(Learner):
    Config = PPOConfig
    quick_overrides = ("agent.num_steps=32",)  # an update every 32 x num_envs agent steps

    def __init__(self, cfg: PPOConfig, spec: EnvSpec, interventions, device: torch.device, seed: int):
        self.cfg, self.device, self.num_envs, self.num_actions = cfg, device, spec.num_envs, spec.num_actions
        self.interventions = interventions
        self.restarts = 0  # fresh starts so far (interventions.reset with layers=0)
        self.rng = np.random.default_rng(seed)
        obs_shape, obs_dtype, num_actions, num_envs = (
            spec.obs_shape,
            spec.obs_dtype,
            spec.num_actions,
            spec.num_envs,
        )
        self.check_config({"agent": vars(cfg), "env": {"num_envs": num_envs}})

        obs_scale = 1 / 255 if np.dtype(obs_dtype) == np.uint8 else 1.0

        def factory(value_bins: int = 1, **kw):  # logits, then the critic's outputs
            towers = (num_actions, value_bins) if cfg.separate_networks else ()
            return build_network(
                obs_shape,
                num_actions + value_bins,
                cfg.arch,
                obs_scale,
                **{"activation": cfg.activation, "towers": towers, **kw},
            )

        self.values = interventions.value_head()  # a scalar critic, or categorical (two_hot, ...)
        self.network = interventions.build(factory).to(device)
        self.target = None  # PPO bootstraps from its own critic
        self.optimizer = self.make_optimizer()

        self.rollout = Rollout.empty(cfg.num_steps, num_envs, obs_shape, obs_dtype, device)
        self.updates = 0
        self.lr = cfg.lr  # the learning rate of the update in progress (annealed: ``prepare``)
        self.acted: dict[str, torch.Tensor] = {}  # what the last act stores: actions, logprobs, values

    @staticmethod
    def check_config(cfg) -> None:
        """What the field ranges cannot say: a rollout must split into equal minibatches, and
        separate networks are MLPs."""
        batch = cfg["agent"]["num_steps"] * cfg["env"]["num_envs"]
        if batch % cfg["agent"]["num_minibatches"]:
            raise ValueError(
                f"agent.num_minibatches={cfg['agent']['num_minibatches']} must divide the rollout "
                f"(agent.num_steps x env.num_envs = {batch})"
            )
        if cfg["agent"].get("separate_networks") and cfg["agent"]["arch"] != "mlp":
            raise ValueError(
                f"agent.separate_networks=true is built for agent.arch=mlp, not {cfg['agent']['arch']}"
            )
        parts = str(cfg.get("intervention", "")).split("_")
        if cfg["agent"].get("separate_networks") and ("crelu" in parts or "spectral" in parts):
            raise ValueError(
                "agent.separate_networks=true cannot take crelu or spectral_norm (they act on a layer as "
                "one matrix, not tower by tower); use agent.separate_networks=false"
            )

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Built from the live parameters; interventions that replace parameters call it again."""
        params = [p for p in self.network.parameters() if p.requires_grad]
        # fused: one kernel for the whole step on CPU and CUDA (same update, fewer passes over memory)
        return torch.optim.Adam(
            params, lr=self.cfg.lr, eps=self.cfg.adam_eps, fused=self.device.type in ("cpu", "cuda")
        )

    # ---- acting -------------------------------------------------------------------------
    def policy_and_value(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, value, critic outputs) for a batch of observations."""
        out = self.network(obs)
        logits, critic = out[:, : self.num_actions], out[:, self.num_actions :]
        return logits, self.values.expected(critic)[:, 0], critic

    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        self.acted = self.policy_sample(torch.as_tensor(obs, device=self.device))
        return self.acted["actions"].cpu().numpy()

    def policy_sample(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Actions drawn from the policy, with what the rollout stores of them: their
        log-probabilities and the critic's values."""
        with torch.no_grad(), eval_mode(self.network):  # acting is not a training forward
            logits, value, _ = self.policy_and_value(obs)
        # Gumbel-max sampling with the agent's numpy RNG: exact to resume, independent of torch's
        gumbel = torch.as_tensor(self.rng.gumbel(size=logits.shape), dtype=logits.dtype, device=self.device)
        actions = (logits + gumbel).argmax(1)
        logprobs = F.log_softmax(logits, 1).gather(1, actions[:, None]).squeeze(1)
        return {"actions": actions, "logprobs": logprobs, "values": value}

    def value(self, obs: np.ndarray) -> torch.Tensor:
        with torch.no_grad(), eval_mode(self.network):
            return self.policy_and_value(torch.as_tensor(obs, device=self.device))[1]

    # ---- rollout and GAE ----------------------------------------------------------------
    def observe(self, obs, actions, rewards, next_obs, terminated, truncated, step):
        return self.learn(self.remember(obs, actions, rewards, next_obs, terminated, truncated, step), step)

    def remember(self, obs, actions, rewards, next_obs, terminated, truncated, step) -> int:
        """Store the transition; once the rollout is full, its advantages and minibatches are
        prepared: returns how many minibatch updates are then due."""
        c = self.cfg
        rewards = torch.as_tensor(
            np.sign(rewards) if c.reward_clip else rewards, dtype=torch.float32, device=self.device
        )
        if c.reward_scale != 1.0:
            rewards = rewards * c.reward_scale
        cut_short = torch.as_tensor(truncated & ~terminated, device=self.device)
        if cut_short.any():  # bootstrap a time limit from the true final observation
            rewards = rewards + c.gamma * cut_short * self.value(next_obs)
        full = self.rollout.add(
            obs=torch.as_tensor(obs, device=self.device),
            actions=torch.as_tensor(actions, device=self.device),
            logprobs=self.acted["logprobs"],
            values=self.acted["values"],
            rewards=rewards,
            dones=torch.as_tensor(terminated | truncated, dtype=torch.float32, device=self.device),
        )
        if not full:
            return 0
        advantages, returns = self.rollout.advantages_and_returns(
            self.value(next_obs), c.gamma, c.gae_lambda, c.value_target
        )
        return self.prepare(advantages, returns, step)

    def restart(self) -> None:
        """A fresh agent starts here (interventions.reset, ``layers=0``): the rows of the rollout in
        progress came from the old policy, so the next update is made of the new one's only."""
        self.rollout.t = 0
        self.restarts += 1  # (the runner re-anchors the probes' dist_from_init)

    def truncate(self, obs: np.ndarray) -> None:
        """The episodes in progress end here (a resume that restarts the envs): the rollout's
        last row is cut as a time limit, bootstrapped with the value of ``obs``, the observation
        that followed it; GAE then never runs across the seam."""
        if self.rollout.t:
            self.rollout.cut(self.value(obs), self.cfg.gamma)

    def prediction(self, outputs: torch.Tensor) -> torch.Tensor:
        """The scalar per input that the eNTK probe differentiates: the critic's value."""
        return self.values.expected(outputs[:, self.num_actions :])[:, 0]

    # ---- update -------------------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        if not self.cfg.anneal_lr:
            return self.cfg.lr
        return self.cfg.lr * max(1.0 - step / max(self.cfg.anneal_steps, 1), 0.0)

    def prepare(self, advantages: torch.Tensor, returns: torch.Tensor, step: int) -> int:
        """The learning rate of this update and its minibatches (``update_epochs`` passes over the
        rollout in orders drawn from the agent's RNG as they start); returns how many."""
        c = self.cfg
        advantages, returns = advantages.flatten(), returns.flatten()
        if c.norm_adv and c.norm_adv_over == "rollout":
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        self.lr = self.learning_rate(step)
        self.set_learning_rate(self.lr)  # (an intervention that rebuilds the optimizer keeps it)
        extra = {"advantages": advantages, "returns": returns}
        self.pending = self.rollout.minibatches(extra, self.rng, c.update_epochs, c.num_minibatches)
        return c.update_epochs * c.num_minibatches

    def learn(self, updates: int, step: int) -> dict:
        """``updates`` minibatch updates; their metrics averaged (an interval intervention fires once)."""
        return average_updates([self.update(step) for _ in range(updates)])

    def update(self, step: int) -> tuple[dict[str, torch.Tensor], dict]:
        return self.minibatch_update(self.sample(), step)

    def sample(self, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """The next minibatch of the rollout being learned, on ``device`` (the agent's)."""
        return {k: v.to(device) if device else v for k, v in next(self.pending).items()}

    def minibatch_update(
        self, mb: dict[str, torch.Tensor], step: int
    ) -> tuple[dict[str, torch.Tensor], dict]:
        loss, metrics = self.loss(mb)
        grad_norm, acted = self.train_step(loss, step, self.cfg.max_grad_norm)
        return self.finish_update(loss, metrics, grad_norm), acted

    def loss(self, mb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """The clipped surrogate, the value loss and the entropy bonus on a minibatch; and what
        the update logs of them."""
        c = self.cfg
        logits, value, critic = self.policy_and_value(mb["obs"])
        log_probs = F.log_softmax(logits, 1)
        log_ratio = log_probs.gather(1, mb["actions"][:, None]).squeeze(1) - mb["logprobs"]
        ratio = log_ratio.exp()
        adv = mb["advantages"]
        if c.norm_adv and c.norm_adv_over == "minibatch":
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.clip_coef, 1 + c.clip_coef)).mean()
        value_loss = self.value_loss(critic, mb)
        entropy = -(log_probs.exp() * log_probs).sum(1).mean()
        loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()  # Schulman's low-variance estimator
            clip_frac = ((ratio - 1).abs() > c.clip_coef).float().mean()
        return loss, {
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": entropy.detach(),
            "approx_kl": approx_kl,
            "clip_frac": clip_frac,
            "value_mean": value.detach().mean(),
            "targets": self.values.target_metrics(mb["returns"]),
        }

    def finish_update(self, loss: torch.Tensor, metrics: dict, grad_norm: torch.Tensor) -> dict:
        """After the step and the interventions that act after it: count it; its metrics."""
        self.updates += 1
        targets = metrics.pop("targets")
        return {
            "loss": loss.detach(),
            **metrics,
            "grad_norm": grad_norm,
            **targets,
            "lr": torch.tensor(self.lr),
        }

    def value_loss(self, critic, mb) -> torch.Tensor:
        """The value head's loss on the returns: for a scalar critic 0.5 x squared error, clipped
        around the rollout's values (CleanRL); a categorical critic's own (cross entropy)."""

        def regression(value, returns):
            squared = (value - returns).pow(2)
            if self.cfg.clip_value:
                clipped = mb["values"] + (value - mb["values"]).clamp(-self.cfg.clip_coef, self.cfg.clip_coef)
                squared = torch.max(squared, (clipped - returns).pow(2))
            return 0.5 * squared.mean()

        return self.values.loss(critic, mb["returns"], regression=regression)

    def probe_inputs(self, batch_size: int, rng: np.random.Generator) -> torch.Tensor | None:
        """Observations of the latest rollout for the probes (drawn with the probe's RNG)."""
        if self.rollout.filled == 0:
            return None
        rows = self.rollout.obs[: self.rollout.filled].flatten(0, 1)
        return rows[torch.as_tensor(rng.integers(len(rows), size=batch_size), device=self.device)]

    # ---- checkpoint state ---------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self.rollout.state_dict(),  # rollout, t, filled
            "updates": self.updates,
            "rng": self.rng.bit_generator.state,
            "restarts": self.restarts,
        }

    def load_state_dict(self, state: dict) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer = self.make_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.rollout.load_state_dict(state, self.device)
        self.updates = state["updates"]
        self.rng.bit_generator.state = state["rng"]
        self.restarts = state.get("restarts", 0)
