"""Interventions: what each hook does on a tiny network, names, and a smoke matrix."""
import pandas as pd
import pytest
import torch
from torch import nn

import agents
from agents.networks import build_network
from interventions import INTERVENTIONS, Composition, split_name
from runner.config import compose_config
from runner.loop import Run


def test_names_compose_and_unknown_names_list_the_valid_ones():
    assert split_name("none") == [] and split_name("ln_l2") == ["ln", "l2"] and split_name("l2_ln") == ["l2", "ln"]
    with pytest.raises(ValueError, match="unknown intervention 'ln_magic'; valid: none, .*l2.*ln"):
        split_name("ln_magic")


@pytest.mark.parametrize("obs_shape", [(4, 84, 84), (4, 10, 10), (8,)])
def test_ln_puts_a_layernorm_before_every_nonlinearity(obs_shape):
    factory = lambda **kw: build_network(obs_shape, 3, **kw)  # noqa: E731
    plain, normed = Composition("none").build(factory), Composition("ln").build(factory)
    assert not any(isinstance(m, nn.LayerNorm) for m in plain.modules())
    layers = list(normed.body)
    relus = [i for i, m in enumerate(layers) if isinstance(m, nn.ReLU)]
    assert relus and all(isinstance(layers[i - 1], nn.LayerNorm) for i in relus)
    assert sum(isinstance(m, nn.LayerNorm) for m in layers) == len(relus)
    assert normed(torch.zeros(2, *obs_shape)).shape == (2, 3)


def test_l2_adds_coef_times_squared_norm():
    net = build_network((8,), 3)
    comp = Composition("l2", {"l2": {"coef": 0.01}})
    expected = 0.01 * sum(p.detach().pow(2).sum() for p in net.parameters())
    torch.testing.assert_close(comp.loss(net, torch.tensor(1.5)), 1.5 + expected)


SMOKE_INTERVENTIONS = ["none", *sorted(INTERVENTIONS), "ln_l2"]


@pytest.mark.parametrize("agent", sorted(agents.AGENTS))
@pytest.mark.parametrize("intervention", SMOKE_INTERVENTIONS)
def test_every_agent_runs_with_every_intervention(tmp_path, agent, intervention):
    overrides = [f"agent={agent}", f"intervention={intervention}", "total_steps=400", "log.interval=100",
                 "log.progress=false", f"run_dir={tmp_path}", "env.num_envs=2"]
    if agent == "dqn":
        overrides += ["agent.learning_starts=100", "agent.batch_size=4", "agent.buffer_size=500"]
    cfg = compose_config(overrides)
    assert Run(cfg).train() == 0
    d = tmp_path / "minatar" / "breakout" / agent / intervention / "seed0"
    returns = pd.read_csv(d / "returns.csv")
    assert (returns["intervention"] == intervention).all() and (d / "done").exists()
