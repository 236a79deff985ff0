"""Probes: hand-checked diagnostics, the probe leaves the agent alone, and (slow) it measures
plasticity loss where it is known to happen."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import TINY_DQN, feed, find_run, make_dqn, make_ppo
from plasticity_bench.interventions import Composition
from plasticity_bench.nets.networks import Network, build_network
from plasticity_bench.probes import (
    ProbeConfig,
    Prober,
    entk_diagnostics,
    entk_gram,
    first_distinct,
    probe_loss,
)
from plasticity_bench.probes.fitting import random_targets
from plasticity_bench.probes.ntk import RELATIVE_FLOOR
from plasticity_bench.probes.units import dormant_scores, effective_rank, unit_diagnostics, zombie_mask


def test_dormant_and_zombie_on_hand_built_activations():
    # 4 inputs x 4 units: dead, tiny, ordinary, always-on
    pre = torch.tensor(
        [[-1.0, 0.01, 1.0, 2.0], [-2.0, -1.0, -1.0, 3.0], [-1.0, -1.0, 2.0, 1.0], [-3.0, -1.0, 1.0, 2.0]]
    )
    post = pre.relu()
    scores = dormant_scores(post)  # unit means 0, .0025, 1, 2 over a layer mean of .800625
    assert scores[0] == 0 and 0 < scores[1] < 0.025 and scores[2] > 0.1
    assert (scores <= 0.0).tolist() == [True, False, False, False]
    assert (scores <= 0.025).tolist() == [True, True, False, False]
    assert zombie_mask(pre).tolist() == [False, False, False, True]


def test_conv_units_are_channels():
    pre = torch.ones(2, 3, 4, 4)
    pre[:, 1] = -1  # channel 1 dead
    pre[0, 2, 0, 0] = -1  # channel 2 negative at one position of one input: not a zombie
    post = pre.relu()
    assert dormant_scores(post).shape == (3,) and dormant_scores(post)[1] == 0
    assert zombie_mask(pre).tolist() == [True, False, False]


def test_unit_diagnostics_on_a_network_with_a_dead_and_a_zombie_unit():
    net = build_network((3,), 2, "mlp")
    with torch.no_grad():
        fc1 = net.body.fc1
        fc1.weight.zero_(), fc1.bias.fill_(0.5)
        fc1.bias[0] = -1.0  # unit 0: never active -> dead; every other unit: always on -> zombie
    rows = {(m, layer): v for m, layer, v in unit_diagnostics(net, torch.randn(32, 3))}
    assert rows[("dormant_frac@0.0", "fc1")] == pytest.approx(1 / 256)
    assert rows[("zombie_frac", "fc1")] == pytest.approx(255 / 256)
    assert {layer for _, layer in rows} == {"fc1", "fc2", "fc3", ""}


def test_effective_rank_of_a_known_low_rank_matrix():
    u, _ = torch.linalg.qr(torch.randn(100, 5))
    v, _ = torch.linalg.qr(torch.randn(40, 5))
    equal = u[:, :3] @ v[:, :3].T
    assert effective_rank(equal) == 3
    tail = u @ torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.001, 0.001])) @ v.T  # tail holds < 1%
    assert effective_rank(tail) == 3
    assert effective_rank(torch.randn(64, 16)) == 16


def test_entk_of_a_linear_model_is_x_xt():
    x = torch.randn(8, 5)
    linear = Network(nn.Sequential(nn.Flatten()), nn.Linear(5, 1, bias=False))
    torch.testing.assert_close(entk_gram(linear, x), (x @ x.T).double(), rtol=1e-5, atol=1e-5)
    diagnostics = entk_diagnostics(entk_gram(linear, x))
    assert diagnostics["entk_rank"] == 5  # 8 inputs in 5 dimensions
    assert diagnostics["entk_condition"] > 1e4  # singular, floored at the rank tolerance
    orthogonal = entk_diagnostics(entk_gram(linear, torch.eye(5)))
    assert orthogonal["entk_condition"] == pytest.approx(1.0) and orthogonal["grad_cosine"] == pytest.approx(
        0.0
    )


def test_probe_loss_decreases_with_more_steps_on_a_fresh_net():
    torch.manual_seed(0)
    net = build_network((4, 10, 10), 6, "minatar_cnn")
    x = torch.rand(64, 4, 10, 10) < 0.3
    targets = random_targets(net, x, 10)
    adam = lambda params: torch.optim.Adam(params, lr=1e-3)  # noqa: E731
    losses = [probe_loss(net, x, steps, adam, targets=targets) for steps in (0, 20, 200)]
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] < 0.5 * losses[0]


@pytest.mark.parametrize("intervention", ["none", "spectral_norm"])  # its power iteration writes buffers
def test_probes_leave_the_agent_untouched(intervention):
    agent = make_dqn(4, intervention)
    feed(agent, 30)
    before = copy.deepcopy(agent.state_dict())
    torch_rng = torch.get_rng_state()
    rows = Prober(ProbeConfig(batch_size=32, steps=5, entk_batch=8), agent.network, seed=0)(agent)
    names = {metric for metric, _, _ in rows}
    assert {
        "probe_loss",
        "probe_loss_fresh",
        "dormant_frac@0.1",
        "zombie_frac",
        "feature_srank",
        "param_norm",
        "dist_from_init",
        "entk_condition",
        "entk_rank",
        "grad_cosine",
    } <= names
    after = agent.state_dict()
    for key in ("network", "target"):
        for name, tensor in before[key].items():
            assert torch.equal(tensor, after[key][name]), name
    for index, state in before["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, after["optimizer"]["state"][index][name])
    assert before["rng"] == after["rng"] and torch.equal(torch_rng, torch.get_rng_state())


def test_a_run_with_probes_acts_like_one_without(run, tmp_path):
    run(*TINY_DQN, f"run_dir={tmp_path / 'with'}")
    run(*TINY_DQN, "probe.interval=0", f"run_dir={tmp_path / 'without'}")
    with_dir, without_dir = find_run(tmp_path / "with"), find_run(tmp_path / "without")
    assert with_dir.parent.name == without_dir.parent.name  # probes do not change training: the same variant
    assert (with_dir / "returns.csv").read_bytes() == (without_dir / "returns.csv").read_bytes()
    with_probes = pd.read_csv(with_dir / "metrics.csv", dtype={"layer": str})
    without = pd.read_csv(without_dir / "metrics.csv", dtype={"layer": str})
    training = with_probes[with_probes.metric.isin(["loss", "q_mean", "grad_norm", "epsilon"])].reset_index(
        drop=True
    )
    pd.testing.assert_frame_equal(training, without)
    probes = with_probes[~with_probes.metric.isin(["loss", "q_mean", "grad_norm", "epsilon"])]
    assert sorted(probes.step.unique()) == [600, 1200, 1800, 2400]
    assert (probes.metric == "probe_loss_fresh").sum() == 1


def random_label_tasks(intervention: str, tasks: int, seed: int = 0, steps_per_task: int = 400):
    """An MLP on 1,000 sklearn digits whose labels are re-drawn every task (the CPU-scale
    setting); after each task, probe_loss of the network and of a fresh one, on 256 digits."""
    from sklearn.datasets import load_digits

    from plasticity_bench.nets.networks import reinitialised

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(load_digits().data[:1000] / 16.0, dtype=torch.float32)
    composition = Composition(intervention, {"l2": {"coef": 1e-4}})
    net = composition.build(lambda **kw: build_network((64,), 10, "mlp", **kw))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    adam = lambda params: torch.optim.Adam(params, lr=1e-3)  # noqa: E731
    rows = []
    for task in range(tasks):
        labels = torch.as_tensor(rng.integers(10, size=len(x)))
        for _ in range(steps_per_task):
            batch = torch.as_tensor(rng.integers(len(x), size=128))
            loss = composition.loss(net, nn.functional.cross_entropy(net(x[batch]), labels[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = float((net(x).argmax(1) == labels).float().mean())
        with torch.random.fork_rng():
            torch.manual_seed(task)
            probe = probe_loss(net, x[:256], 200, adam)
            torch.manual_seed(task)
            fresh = probe_loss(reinitialised(net), x[:256], 200, adam)
        rows.append({"task": task + 1, "accuracy": accuracy, "probe_loss": probe, "probe_loss_fresh": fresh})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_probe_loss_rises_with_plasticity_loss_and_ln_l2_keeps_it_low():
    none, ln_l2 = random_label_tasks("none", 20), random_label_tasks("ln_l2", 20)
    print("\n", pd.concat({"none": none, "ln_l2": ln_l2}, axis=1).round(3).to_string())
    early, late = slice(1, 6), slice(15, 20)  # tasks 2-6 and the last five
    assert none.probe_loss[late].mean() > 1.5 * none.probe_loss_fresh[late].mean()  # worse than a fresh net
    assert none.probe_loss[late].mean() > 5 * none.probe_loss[early].mean()  # and than itself early on
    assert ln_l2.probe_loss[late].mean() < 0.1 * none.probe_loss[late].mean()
    assert ln_l2.accuracy[late].mean() > none.accuracy[late].mean() + 0.3


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
    # float32 eps would have capped it near 3e6
    assert entk_diagnostics(gram)["entk_condition"] == pytest.approx(1e9)


def test_probe_inputs_do_not_swallow_errors(monkeypatch):
    agent = make_dqn(4)
    assert agent.probe_inputs(8, np.random.default_rng(0)) is None  # nothing stored yet: no probe
    feed(agent, 3)

    def broken(*args):
        raise ValueError("boom")

    monkeypatch.setattr(agent.replay, "sample", broken)
    with pytest.raises(ValueError, match="boom"):
        agent.probe_inputs(8, np.random.default_rng(0))
