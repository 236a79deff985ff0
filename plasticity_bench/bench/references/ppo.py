"""Yardstick, not the product: PPO (CleanRL's ppo_atari_envpool) as a minimal loop in plain eager
PyTorch, with nothing from plasticity-bench, on Atari through EnvPool or on MinAtar.

Same algorithm and hyper-parameters as ``agent=ppo`` with each suite's settings: 8 envs x 128
steps, 4 minibatches x 4 epochs, Adam (eps 1e-5), GAE 0.95, gamma 0.99, entropy 0.01, value
coefficient 0.5 with a clipped value loss, advantages normalised per minibatch, gradient norm
0.5; one network with the actions' logits and the value as outputs. Atari: Nature CNN, lr 2.5e-4
annealed over ``total_steps``, clip 0.1, sign-clipped rewards. MinAtar: conv 16x3x3 -> 128,
lr 3e-4, clip 0.2, raw rewards, sticky actions 0.1. Observations are stored raw (uint8, bool) and
scaled in the forward pass, as the suite does. EnvPool resets an env on the step after its
episode ends; that step is counted like any other.
"""

import os
import time

import numpy as np
import torch
import torch.nn as nn


class MinAtarEnvs:
    """Eight MinAtar games stepped in a loop (autoreset), channels first."""

    def __init__(self, game: str, num_envs: int, seed: int):
        from minatar import Environment

        self.envs = [Environment(game, sticky_action_prob=0.1) for _ in range(num_envs)]
        for i, env in enumerate(self.envs):
            env.seed(seed * 10_007 + i)
            env.reset()
        self.actions = self.envs[0].num_actions()

    def observe(self):
        return np.stack([env.state().transpose(2, 0, 1) for env in self.envs])

    def step(self, actions):
        rewards, dones = np.zeros(len(self.envs), np.float32), np.zeros(len(self.envs), np.float32)
        for i, (env, action) in enumerate(zip(self.envs, actions)):
            rewards[i], dones[i] = env.act(int(action))
            if dones[i]:
                env.reset()
        return self.observe(), rewards, dones


def make(suite: str, game: str, num_envs: int, seed: int):
    """(envs, number of actions, network) for a suite."""
    if suite == "minatar":
        envs = MinAtarEnvs(game, num_envs, seed)
        channels = envs.envs[0].state_shape()[2]
        body = [nn.Conv2d(channels, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 128), nn.ReLU()]
        return envs, envs.actions, nn.Sequential(*body, nn.Linear(128, envs.actions + 1))
    import envpool

    pool = envpool.make(
        f"{game}-v5",
        env_type="gymnasium",
        num_envs=num_envs,
        seed=seed,
        num_threads=min(num_envs, os.cpu_count() or 1),
        repeat_action_probability=0.25,
        max_episode_steps=27000,
        noop_max=30,
        episodic_life=False,
        reward_clip=False,
    )
    actions = pool.action_space.n
    body = [
        nn.Conv2d(4, 32, 8, 4),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3136, 512),
        nn.ReLU(),
    ]
    return pool, actions, nn.Sequential(*body, nn.Linear(512, actions + 1))


def steps_per_second(
    total_steps: int,
    measure_from: int,
    suite: str = "atari",
    game: str = "Breakout",
    seed: int = 0,
    num_envs: int = 8,
    num_steps: int = 128,
    minibatches: int = 4,
    epochs: int = 4,
) -> float:
    """Agent steps/s (summed over envs) between agent steps ``measure_from`` and ``total_steps``."""
    torch.manual_seed(seed)
    envs, actions, net = make(suite, game, num_envs, seed)
    atari = suite == "atari"
    lr, clip, scale = (2.5e-4, 0.1, 1 / 255) if atari else (3e-4, 0.2, 1.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, eps=1e-5)
    obs = envs.reset()[0] if atari else envs.observe()
    shape = (num_steps, num_envs)
    buf_obs = torch.zeros(shape + obs.shape[1:], dtype=torch.from_numpy(obs).dtype)  # raw: uint8 or bool
    forward = lambda o: net(o.float() * scale)  # noqa: E731
    buf_act, buf_logp, buf_val, buf_rew, buf_done = (torch.zeros(shape) for _ in range(5))
    step, start, first = 0, time.perf_counter(), None
    while step < total_steps:
        for t in range(num_steps):
            if first is None and step >= measure_from:
                start, first = time.perf_counter(), step
            x = torch.as_tensor(obs)
            with torch.no_grad():
                out = forward(x)
            dist = torch.distributions.Categorical(logits=out[:, :actions], validate_args=False)
            action = dist.sample()
            buf_obs[t], buf_act[t], buf_logp[t], buf_val[t] = (
                x,
                action,
                dist.log_prob(action),
                out[:, actions],
            )
            if atari:
                obs, reward, terminated, truncated, _ = envs.step(action.numpy().astype(np.int32))
                reward, done = np.sign(reward), terminated | truncated
            else:
                obs, reward, done = envs.step(action.numpy())
            buf_rew[t], buf_done[t] = torch.as_tensor(reward), torch.as_tensor(done, dtype=torch.float32)
            step += num_envs
        with torch.no_grad():
            next_value = forward(torch.as_tensor(obs))[:, actions]
        advantages, running = torch.zeros(shape), torch.zeros(num_envs)
        for t in reversed(range(num_steps)):
            following = next_value if t == num_steps - 1 else buf_val[t + 1]
            delta = buf_rew[t] + 0.99 * following * (1 - buf_done[t]) - buf_val[t]
            running = advantages[t] = delta + 0.99 * 0.95 * (1 - buf_done[t]) * running
        returns = advantages + buf_val
        b_obs, b_act, b_logp, b_adv, b_ret, b_val = (
            b.flatten(0, 1) for b in (buf_obs, buf_act, buf_logp, advantages, returns, buf_val)
        )
        if atari:
            optimizer.param_groups[0]["lr"] = lr * max(1 - step / total_steps, 0.0)
        for _ in range(epochs):
            for mb in torch.randperm(len(b_obs)).chunk(minibatches):
                out = forward(b_obs[mb])
                dist = torch.distributions.Categorical(logits=out[:, :actions], validate_args=False)
                ratio = (dist.log_prob(b_act[mb]) - b_logp[mb]).exp()
                adv = (b_adv[mb] - b_adv[mb].mean()) / (b_adv[mb].std() + 1e-8)
                policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
                value = out[:, actions]
                clipped = b_val[mb] + (value - b_val[mb]).clamp(-clip, clip)
                value_loss = 0.5 * torch.max((value - b_ret[mb]) ** 2, (clipped - b_ret[mb]) ** 2).mean()
                loss = policy_loss + 0.5 * value_loss - 0.01 * dist.entropy().mean()
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 0.5)
                optimizer.step()
    if atari:
        envs.close()
    return (step - first) / (time.perf_counter() - start)
