"""Yardstick, not the product: the MinAtar paper's DQN (Young & Tian 2019) as a minimal loop in
plain eager PyTorch, with nothing from plasticity-bench, so that ``make bench`` can say how much
the suite's runner costs (or saves) against the simplest code that does the same work.

Same algorithm and hyper-parameters as ``agent=dqn env=minatar`` with its preset: one env,
sticky actions 0.1, conv 16x3x3 -> 128 -> actions, centred RMSProp (lr 2.5e-4, alpha 0.95,
eps 0.01), Huber loss, batch 32, one update per frame, target copy every 1,000 updates, gamma
0.99; epsilon fixed at ``epsilon`` (the benchmark measures after exploration has decayed).
``layer_norm`` and ``l2`` make it ``intervention=ln_l2``: a LayerNorm before each ReLU, and
``l2 * sum ||theta||^2`` over every parameter added to the loss, as the textbook writes it.
"""

import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from minatar import Environment


def steps_per_second(
    total_steps: int,
    measure_from: int,
    game: str = "breakout",
    seed: int = 0,
    learning_starts: int = 1000,
    buffer_size: int = 20000,
    epsilon: float = 0.1,
    layer_norm: bool = False,
    l2: float = 0.0,
) -> float:
    """Agent steps/s between steps ``measure_from`` and ``total_steps`` of one run."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = Environment(game, sticky_action_prob=0.1)
    env.seed(seed)
    env.reset()
    channels, actions = env.state_shape()[2], env.num_actions()

    def q_network():  # (no Identity stand-ins without layer_norm: each module call costs the plain loop time)
        norm = (lambda shape: [nn.LayerNorm(shape)]) if layer_norm else (lambda shape: [])
        return nn.Sequential(
            nn.Conv2d(channels, 16, 3),
            *norm([16, 8, 8]),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * 8 * 8, 128),
            *norm(128),
            nn.ReLU(),
            nn.Linear(128, actions),
        )

    q, target = q_network(), q_network()
    target.load_state_dict(q.state_dict())
    optimizer = torch.optim.RMSprop(q.parameters(), lr=2.5e-4, alpha=0.95, eps=0.01, centered=True)

    obs_buffer = np.zeros((buffer_size, channels, 10, 10), dtype=bool)
    next_buffer = np.zeros_like(obs_buffer)
    action_buffer = np.zeros(buffer_size, dtype=np.int64)
    reward_buffer = np.zeros(buffer_size, dtype=np.float32)
    done_buffer = np.zeros(buffer_size, dtype=np.float32)
    obs = env.state().transpose(2, 0, 1)
    updates, start = 0, time.perf_counter()
    for step in range(total_steps):
        if step == measure_from:
            start = time.perf_counter()
        if rng.random() < epsilon:
            action = int(rng.integers(actions))
        else:
            with torch.no_grad():
                action = int(q(torch.as_tensor(obs[None], dtype=torch.float32)).argmax())
        reward, terminal = env.act(action)
        next_obs = env.state().transpose(2, 0, 1)
        i = step % buffer_size
        obs_buffer[i], next_buffer[i], action_buffer[i] = obs, next_obs, action
        reward_buffer[i], done_buffer[i] = reward, terminal
        if terminal:
            env.reset()
            next_obs = env.state().transpose(2, 0, 1)
        obs = next_obs

        if step + 1 >= learning_starts:
            idx = rng.integers(min(step + 1, buffer_size), size=32)
            states = torch.as_tensor(obs_buffer[idx], dtype=torch.float32)
            next_states = torch.as_tensor(next_buffer[idx], dtype=torch.float32)
            with torch.no_grad():
                y = (
                    torch.as_tensor(reward_buffer[idx])
                    + 0.99 * (1 - torch.as_tensor(done_buffer[idx])) * target(next_states).max(1).values
                )
            q_taken = q(states).gather(1, torch.as_tensor(action_buffer[idx])[:, None]).squeeze(1)
            loss = F.smooth_l1_loss(q_taken, y)
            if l2:
                loss = loss + l2 * sum(p.pow(2).sum() for p in q.parameters())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            updates += 1
            if updates % 1000 == 0:
                target.load_state_dict(q.state_dict())
    return (total_steps - measure_from) / (time.perf_counter() - start)
