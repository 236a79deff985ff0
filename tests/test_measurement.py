"""Measurement correctness: each probe and intervention does what its paper defines (issue
"Measurement correctness"; every test here failed on the code before it)."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import AdamLearner
from plasticity_bench.interventions import Composition
from plasticity_bench.nets.networks import Network, build_network, eval_mode
from plasticity_bench.nets.surgery import optimizer_holds_exactly, zero_moments
from plasticity_bench.nets.values import hl_gauss, support
from plasticity_bench.probes import first_distinct
from plasticity_bench.probes.ntk import RELATIVE_FLOOR, entk_diagnostics, entk_gram
from tests.test_dqn import feed, make_dqn
from tests.test_interventions import fake_agent, mlp_with_dead_units
from tests.test_ppo import make_ppo


def test_entk_inputs_are_the_first_distinct_ones_in_draw_order():
    rows = torch.tensor([[5, 0], [1, 0], [5, 0], [3, 0], [0, 9], [1, 0]])
    assert first_distinct(rows, 3).tolist() == [[5, 0], [1, 0], [3, 0]]  # sorted would be [0,9],[1,0],[3,0]
    assert first_distinct(rows, 10).tolist() == [[5, 0], [1, 0], [3, 0], [0, 9]]
    grids = torch.rand(64, 4, 10, 10) < 0.5
    picked = first_distinct(torch.cat([grids[:8], grids]), 16)
    assert torch.equal(picked, grids[:16])


def per_input_gradients(network, inputs, prediction):
    rows = []
    for x in inputs:
        network.zero_grad()
        prediction(network(x[None]))[0].backward()
        rows.append(torch.cat([p.grad.flatten() for p in network.parameters()]))
    return torch.stack(rows).double()


@pytest.mark.parametrize("agent", ["dqn_two_hot", "ppo"])
def test_entk_differentiates_the_agents_prediction(agent):
    torch.manual_seed(0)
    agent = make_dqn(2, "two_hot") if agent == "dqn_two_hot" else make_ppo(2)
    inputs = torch.rand(6, 4, 10, 10) < 0.5
    jacobian = per_input_gradients(agent.network, inputs, agent.prediction)
    torch.testing.assert_close(
        entk_gram(agent.network, inputs, agent.prediction), jacobian @ jacobian.T, rtol=1e-4, atol=1e-8
    )
    outputs = agent.network(inputs)
    if agent.target is not None:  # DQN: the expected Q of action 0 under the categorical head
        torch.testing.assert_close(agent.prediction(outputs), agent.values.expected(outputs)[:, 0])
    else:  # PPO: the critic's value, the last output
        torch.testing.assert_close(agent.prediction(outputs), outputs[:, -1])


def test_entk_condition_floor_is_fixed_whatever_the_batch_size():
    linear = Network(nn.Sequential(nn.Flatten()), nn.Linear(5, 1, bias=False))
    for n in (8, 64):  # n inputs in 5 dimensions: a singular Gram
        diagnostics = entk_diagnostics(entk_gram(linear, torch.randn(n, 5)))
        assert diagnostics["entk_rank"] == 5 and diagnostics["entk_condition"] == pytest.approx(
            1 / RELATIVE_FLOOR
        )
    gram = torch.diag(torch.tensor([1.0, 1e-6, 1e-9], dtype=torch.float64))  # ill-conditioned, not singular
    assert entk_diagnostics(gram)["entk_condition"] == pytest.approx(
        1e9
    )  # float32 eps would have capped it near 3e6


def test_hl_gauss_clamps_targets_past_the_support_instead_of_dropping_them():
    atoms = support(-10, 10, 51)
    probs = hl_gauss(torch.tensor([11.7, 50.0, -1e4]), atoms, sigma=0.3)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))
    expected = (probs * atoms).sum(1)
    assert expected[0] > 9.5 and expected[1] > 9.5 and expected[2] < -9.5
    comp = Composition("hl_gauss")
    net = comp.build(lambda **kw: build_network((4, 10, 10), 3, **kw))
    loss = comp.value_head().loss(
        net(torch.zeros(2, 4, 10, 10)), torch.tensor([50.0, 0.0]), torch.tensor([0, 1])
    )
    assert loss > 0
    assert (
        float(comp.value_head().target_metrics(torch.tensor([50.0, 0.0, -20.0, 3.0]))["target_clamped_frac"])
        == 0.5
    )


def test_dqn_logs_the_fraction_of_clamped_targets():
    agent = make_dqn(4, "two_hot", reward_clip=False)
    rng = np.random.default_rng(0)
    obs = rng.random((4, 4, 10, 10)) < 0.5
    metrics = agent.observe(
        obs, np.zeros(4, int), np.full(4, 100.0), obs, np.zeros(4, bool), np.zeros(4, bool), 4
    )
    assert float(metrics["target_clamped_frac"]) == 1.0  # rewards of 100 on a [-10, 10] support


@pytest.mark.parametrize(
    "arch, obs_shape, fresh",
    [("minatar_cnn", (4, 10, 10), ["fc2"]), ("nature_cnn", (4, 84, 84), ["fc4"]), ("mlp", (8,), ["fc3"])],
)
def test_plasticity_injection_injects_fresh_hidden_layers(arch, obs_shape, fresh):
    comp = Composition("ln_plasticity_injection", {"plasticity_injection": {"at": 10}})
    net = comp.build(lambda **kw: build_network(obs_shape, 3, arch, **kw))
    injected = [n for n, m in net.new.trunk.named_children() if isinstance(m, nn.Linear)]
    assert len(injected) == len(fresh) and any(isinstance(m, nn.LayerNorm) for m in net.new.trunk)
    x = torch.rand(5, *obs_shape)
    before = net(x).detach()
    agent = AdamLearner(net)
    comp.after_update(agent, step=10)
    torch.testing.assert_close(net(x), before)  # no jump
    for name in fresh:  # the old hidden layer is frozen, the encoder and the fresh copy train
        assert not net.body.get_submodule(name).weight.requires_grad
    assert all(p.requires_grad for p in net.new.parameters()) and not net.head.weight.requires_grad
    encoder = [m for m in list(net.body.children())[: net.split] if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert encoder and all(m.weight.requires_grad for m in encoder)
    assert optimizer_holds_exactly(agent.optimizer, net)
    net(x).pow(2).mean().backward()
    agent.optimizer.step()
    assert not torch.equal(net(x), before)  # the new branch learns


def test_redo_counts_gradient_updates_and_zeroes_recycled_biases():
    net, x = mlp_with_dead_units()
    agent = fake_agent(net, x)
    redo = Composition("redo", {"redo": {"interval": 3}})
    fired = [bool(redo.after_update(agent, step=1000 * k)) for k in range(1, 8)]  # agent steps are ignored
    assert fired == [False, False, True, False, False, True, False]
    assert (net.body.fc1.bias[:10] == 0).all() and (net.body.fc1.weight[:10] != 0).any()
    assert Composition("redo").parts[0].cfg.interval == 1000  # Sokar et al. 2023: every 1,000 updates


def test_polyak_target_updates_work_with_plasticity_injection():
    agent = make_dqn(4, "plasticity_injection", tau=0.5, target_update_interval=1)
    agent.interventions.parts[0].cfg.at = 8
    feed(agent, 4)  # injects at step 8, Polyak-averages every update
    assert bool(agent.network.active) and bool(agent.target.active)
    assert agent.target.active.dtype == torch.bool


def test_target_network_and_acting_run_in_eval_mode():
    agent = make_dqn(4, "spectral_norm")
    assert not agent.target.training and agent.network.training
    u = agent.network.body.fc2.parametrizations.weight[0]._u.clone()
    agent.act(np.random.default_rng(0).random((4, 4, 10, 10)) < 0.5, step=10**7)  # greedy
    assert torch.equal(agent.network.body.fc2.parametrizations.weight[0]._u, u)  # no power iteration
    ppo = make_ppo(2, "spectral_norm")
    u = ppo.network.body.fc2.parametrizations.weight[0]._u.clone()
    ppo.act(np.random.default_rng(0).random((2, 4, 10, 10)) < 0.5, step=0)
    assert torch.equal(ppo.network.body.fc2.parametrizations.weight[0]._u, u) and ppo.network.training


class OwnTrain(nn.Sequential):
    """A module with its own ``train``: it sets its children's modes as it likes."""

    def train(self, mode=True):
        return super().train(mode)


@pytest.mark.parametrize("wrapper", [nn.Sequential, OwnTrain])
def test_eval_mode_gives_every_module_its_own_mode_back(wrapper):
    net = wrapper(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.ReLU(), nn.Linear(2, 2)))
    net[1].eval()  # one module already in eval mode before, one subtree too
    net[2].eval()
    before = [m.training for m in net.modules()]
    with pytest.raises(RuntimeError, match="inside"):
        with eval_mode(net):
            assert not any(m.training for m in net.modules())
            raise RuntimeError("inside")
    assert [m.training for m in net.modules()] == before


def test_probe_inputs_do_not_swallow_errors(monkeypatch):
    agent = make_dqn(4)
    assert agent.probe_inputs(8, np.random.default_rng(0)) is None  # nothing stored yet: no probe
    feed(agent, 3)

    def broken(*args):
        raise ValueError("boom")

    monkeypatch.setattr(agent.replay, "sample", broken)
    with pytest.raises(ValueError, match="boom"):
        agent.probe_inputs(8, np.random.default_rng(0))


def test_first_adam_step_after_zeroed_moments_is_about_three_times_lr():
    weight = nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.Adam([weight], lr=1e-3)
    for _ in range(10_000):  # a long-trained weight: bias correction ~ 1
        optimizer.zero_grad()
        weight.grad = torch.full((4,), 0.5)
        optimizer.step()
    zero_moments(optimizer, weight)
    steps = []
    for _ in range(10):
        before = weight.detach().clone()
        weight.grad = torch.full((4,), 0.5)
        optimizer.step()
        steps.append(float((before - weight.detach())[0]) / 1e-3)
    assert steps[0] == pytest.approx(0.1 / 0.001**0.5, rel=1e-3)  # (1 - b1) / sqrt(1 - b2) = 3.16 x lr
    assert steps[9] == pytest.approx(6.5, abs=0.1) and all(a < b for a, b in zip(steps, steps[1:]))
    fresh = nn.Parameter(torch.zeros(4))
    adam = torch.optim.Adam([fresh], lr=1e-3)
    fresh.grad = torch.full((4,), 0.5)
    adam.step()
    assert float(-fresh.detach()[0]) == pytest.approx(1e-3, rel=1e-3)  # a fresh Adam: 1 x lr


def test_no_file_points_outside_the_repository():
    import subprocess

    from tests.conftest import ROOT

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    outside = "../" + "shared"  # the developers' notes: users of the repository do not have them
    offenders = [
        f
        for f in tracked
        if not f.endswith(".png")
        and (ROOT / f).is_file()
        and outside in (ROOT / f).read_text(errors="ignore")
    ]
    assert offenders == []
    assert (ROOT / "docs" / "science.md").exists()
