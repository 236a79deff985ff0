"""Yardstick, not the product: DQN on Atari through EnvPool (CleanRL's DQN with a vectorized env)
as a minimal loop in plain eager PyTorch, with nothing from plasticity-bench.

Same algorithm and hyper-parameters as ``agent=dqn env=atari``: 8 envs, sticky actions 0.25,
84x84x4 frames, the Nature CNN, Adam lr 1e-4, MSE loss, batch 32, one update per 4 agent steps
(2 per vector step), target copy every 1,000 updates, gamma 0.99, sign-clipped rewards; epsilon
fixed at ``epsilon`` (the benchmark measures after exploration). The replay stores observation
and next observation (no frame dedupe): the plain way. EnvPool resets an env on the step after
its episode ends; that step is counted and stored like any other (about one per episode).
"""

import os
import time

import envpool
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def steps_per_second(
    total_steps: int,
    measure_from: int,
    game: str = "Breakout",
    seed: int = 0,
    num_envs: int = 8,
    learning_starts: int = 1000,
    buffer_size: int = 20000,
    epsilon: float = 0.01,
) -> float:
    """Agent steps/s (summed over envs) between agent steps ``measure_from`` and ``total_steps``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    envs = envpool.make(
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
    actions = envs.action_space.n

    def q_network():
        return nn.Sequential(
            nn.Conv2d(4, 32, 8, 4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(3136, 512),
            nn.ReLU(),
            nn.Linear(512, actions),
        )

    q, target = q_network(), q_network()
    target.load_state_dict(q.state_dict())
    optimizer = torch.optim.Adam(q.parameters(), lr=1e-4)

    obs_buffer = np.zeros((buffer_size, 4, 84, 84), dtype=np.uint8)
    next_buffer = np.zeros_like(obs_buffer)
    action_buffer = np.zeros(buffer_size, dtype=np.int64)
    reward_buffer = np.zeros(buffer_size, dtype=np.float32)
    done_buffer = np.zeros(buffer_size, dtype=np.float32)
    obs, _ = envs.reset()
    step, stored, updates, start, first = 0, 0, 0, time.perf_counter(), None
    while step < total_steps:
        if first is None and step >= measure_from:
            start, first = time.perf_counter(), step
        with torch.no_grad():
            greedy = q(torch.as_tensor(obs, dtype=torch.float32) / 255).argmax(1).numpy()
        action = np.where(rng.random(num_envs) < epsilon, rng.integers(actions, size=num_envs), greedy)
        next_obs, reward, terminated, truncated, _ = envs.step(action.astype(np.int32))
        i = np.arange(stored, stored + num_envs) % buffer_size  # (EnvPool resets on the step after
        obs_buffer[i], next_buffer[i], action_buffer[i] = (
            obs,
            next_obs,
            action,
        )  # an episode ends: stored too)
        reward_buffer[i], done_buffer[i] = np.sign(reward), terminated
        obs, stored, step = next_obs, stored + num_envs, step + num_envs

        if step >= learning_starts:
            for _ in range(num_envs // 4):
                idx = rng.integers(min(stored, buffer_size), size=32)
                with torch.no_grad():
                    next_q = (
                        target(torch.as_tensor(next_buffer[idx], dtype=torch.float32) / 255).max(1).values
                    )
                    y = (
                        torch.as_tensor(reward_buffer[idx])
                        + 0.99 * (1 - torch.as_tensor(done_buffer[idx])) * next_q
                    )
                q_taken = (
                    q(torch.as_tensor(obs_buffer[idx], dtype=torch.float32) / 255)
                    .gather(1, torch.as_tensor(action_buffer[idx])[:, None])
                    .squeeze(1)
                )
                loss = F.mse_loss(q_taken, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                updates += 1
                if updates % 1000 == 0:
                    target.load_state_dict(q.state_dict())
    envs.close()
    return (step - first) / (time.perf_counter() - start)
