"""The README's "Adding an agent", done by a test: a REINFORCE agent written into a module of its
own, registered, and trained like `make minatar AGENT=reinforce` with none, ln_l2, redo and
two_hot; the CSVs, probes and interval hooks work without a change anywhere else. An agent that
misses part of the protocol is refused at registration."""

import dataclasses
import importlib.util

import pandas as pd
import pytest
from hydra.core.config_store import ConfigStore

from plasticity_bench import agents
from plasticity_bench.runner.config import compose_config
from plasticity_bench.runner.loop import Run

REINFORCE = '''
"""REINFORCE with a learned baseline: one update per finished episode of an env."""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from plasticity_bench.agents import register
from plasticity_bench.core.ranges import ranged
from plasticity_bench.nets.learner import Learner
from plasticity_bench.nets.networks import build_network, eval_mode


@dataclass
class ReinforceConfig:
    name: str = "reinforce"
    """Registry name."""
    lr: float = ranged(1e-3, gt=0)
    """Adam learning rate."""
    gamma: float = ranged(0.99, gt=0, le=1)
    """Discount."""


@register("reinforce")
class Reinforce(Learner):  # train_step, rebuild_optimizer, restart, task_switched
    Config = ReinforceConfig
    quick_overrides = ()  # it updates at the end of every episode

    def __init__(self, cfg, spec, interventions, device, seed):
        self.cfg, self.num_actions, self.interventions = cfg, spec.num_actions, interventions
        self.rng, self.target = np.random.default_rng(seed), None
        self.values = interventions.value_head()  # the baseline: a scalar, or categorical (two_hot)
        def factory(value_bins=1, **kw):  # the policy's logits, then the baseline's outputs
            return build_network(spec.obs_shape, spec.num_actions + value_bins, **kw)
        self.network = interventions.build(factory).to(device)
        self.optimizer = self.make_optimizer()
        self.episodes = [[] for _ in range(spec.num_envs)]  # (obs, action, reward) per env
        self.recent = None

    def make_optimizer(self):
        return torch.optim.Adam([p for p in self.network.parameters() if p.requires_grad], lr=self.cfg.lr)

    def act(self, obs, step):
        with torch.no_grad(), eval_mode(self.network):
            logits = self.network(torch.as_tensor(obs))[:, :self.num_actions]
        gumbel = torch.as_tensor(self.rng.gumbel(size=logits.shape), dtype=logits.dtype)
        return (logits + gumbel).argmax(1).numpy()

    def observe(self, obs, actions, rewards, next_obs, terminated, truncated, step):
        metrics = {}
        self.recent = torch.as_tensor(obs)
        for i in range(len(obs)):
            self.episodes[i].append((obs[i], actions[i], float(rewards[i])))
            if terminated[i] or truncated[i]:
                metrics = self.learn(self.episodes[i], step)
                self.episodes[i] = []
        return metrics

    def learn(self, episode, step):
        obs = torch.as_tensor(np.stack([o for o, _, _ in episode]))
        actions = torch.as_tensor(np.array([a for _, a, _ in episode]))
        returns, running = [], 0.0
        for _, _, reward in reversed(episode):
            running = reward + self.cfg.gamma * running
            returns.append(running)
        returns = torch.tensor(returns[::-1], dtype=torch.float32)
        out = self.network(obs)
        critic = out[:, self.num_actions:]
        value = self.values.expected(critic)[:, 0]
        log_prob = F.log_softmax(out[:, :self.num_actions], 1).gather(1, actions[:, None])[:, 0]
        value_loss = self.values.loss(critic, returns)  # MSE, or a categorical head's cross entropy
        loss = -(log_prob * (returns - value.detach())).mean() + value_loss
        _, acted = self.train_step(loss, step)  # interventions' terms, the step, the interval ones
        return {"loss": loss.detach(), **acted}

    def truncate(self, obs):
        self.episodes = [[] for _ in self.episodes]  # an episode cut short teaches nothing here

    def probe_inputs(self, batch_size, rng):
        return None if self.recent is None else self.recent[rng.integers(len(self.recent), size=batch_size)]

    def prediction(self, outputs):
        return self.values.expected(outputs[:, self.num_actions:])[:, 0]

    def state_dict(self):
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.bit_generator.state, "episodes": self.episodes, "recent": self.recent}

    def load_state_dict(self, state):
        self.network.load_state_dict(state["network"])
        self.optimizer = self.make_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.episodes, self.recent = state["episodes"], state["recent"]
'''


@pytest.fixture
def reinforce(tmp_path):
    """Step 1 of "Adding an agent": the module (here in a temporary folder rather than agents/)."""
    path = tmp_path / "reinforce.py"
    path.write_text(REINFORCE)
    spec = importlib.util.spec_from_file_location("reinforce_agent", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # @register adds it to agents.AGENTS
    yield agents.AGENTS["reinforce"]
    del agents.AGENTS["reinforce"]
    for name in ("reinforce.yaml", "reinforce_schema.yaml"):
        ConfigStore.instance().repo["agent"].pop(name, None)


@pytest.mark.parametrize("intervention", ["none", "ln_l2", "redo", "two_hot"])
def test_a_new_agent_trains_with_interventions_probes_and_csvs(
    reinforce, tmp_path, monkeypatch, intervention
):
    assert len(REINFORCE.splitlines()) < 100
    from plasticity_bench.interventions.l2 import L2

    real, pulled = L2.gradients, []
    monkeypatch.setattr(L2, "gradients", lambda self, network: pulled.append(real(self, network)))
    overrides = [
        "env=minatar",
        "agent=reinforce",
        f"intervention={intervention}",
        "total_steps=1500",
        "log.interval=250",
        "probe.interval=500",
        "probe.steps=5",
        "probe.batch_size=32",
        "probe.entk_batch=8",
        "interventions.redo.interval=5",
        "interventions.two_hot.v_max=20",
        "log.progress=false",
        f"run_dir={tmp_path}",
        "threads=1",
    ]
    cfg = compose_config(overrides)
    assert cfg.agent.lr == 1e-3 and cfg.variant.split("[")[0] == intervention
    run = Run(cfg)
    assert run.train() == 0 and (run.dir / "done").exists()
    returns = pd.read_csv(run.dir / "returns.csv")
    metrics = pd.read_csv(run.dir / "metrics.csv")
    assert (
        len(returns) > 5
        and set(returns.agent) == {"reinforce"}
        and set(returns.intervention) == {intervention}
    )
    assert {"loss", "probe_loss", "entk_condition", "dormant_frac@0.1"} <= set(metrics.metric)
    if intervention == "redo":
        assert "redo_reset_frac" in set(metrics.metric)
    assert bool(pulled) == (intervention == "ln_l2")  # the recipe's train_step applies l2's gradient term
    with pytest.raises(Exception, match="agent.lr=-1.0 is out of range: must be > 0"):
        compose_config([*overrides, "agent.lr=-1"])


def test_an_agent_that_misses_part_of_the_protocol_cannot_register():
    from plasticity_bench.agents import register

    @dataclasses.dataclass
    class HalfConfig:
        name: str = "half"

    with pytest.raises(
        TypeError,
        match="HalfAgent does not implement the agent protocol: missing truncate, "
        "task_switched, make_optimizer, probe_inputs, prediction, the Learner base",
    ):

        @register("half")
        class HalfAgent:
            Config = HalfConfig

            def act(self, obs, step): ...

            def observe(self, *args): ...

            def state_dict(self): ...

            def load_state_dict(self, state): ...

    assert "half" not in agents.AGENTS
