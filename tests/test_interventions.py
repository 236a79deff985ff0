"""Interventions: what each hook does on a tiny network, and their names (every agent with every
intervention in a real run: tests/test_intervention_runs.py)."""

import copy
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import AdamLearner
from plasticity_bench.interventions import Composition, split_name
from plasticity_bench.nets.capture import capture, dormant_scores
from plasticity_bench.nets.networks import build_network, reinitialised
from plasticity_bench.nets.surgery import optimizer_holds_exactly, trained_weight, weight_layers, zero_moments
from plasticity_bench.nets.values import hl_gauss, support, two_hot


def test_names_compose_and_unknown_names_list_the_valid_ones():
    assert (
        split_name("none") == []
        and split_name("ln_l2") == ["ln", "l2"]
        and split_name("l2_ln") == ["l2", "ln"]
    )
    with pytest.raises(ValueError, match="unknown intervention 'ln_magic'; valid: none, .*l2.*ln"):
        split_name("ln_magic")
    with pytest.raises(ValueError, match="'crelu_redo': crelu and redo cannot be composed"):
        split_name("crelu_redo")
    with pytest.raises(ValueError, match="l2 appears twice"):
        split_name("l2_l2")


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


@pytest.mark.parametrize("obs_shape", [(4, 84, 84), (4, 10, 10), (8,)])
def test_crelu_keeps_the_parameter_count_within_5_percent(obs_shape):
    factory = lambda **kw: build_network(obs_shape, 6, **kw)  # noqa: E731
    plain, crelu = Composition("none").build(factory), Composition("crelu").build(factory)
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert abs(count(crelu) / count(plain) - 1) < 0.05
    x = torch.randn(3, *obs_shape)
    assert crelu(x).shape == (3, 6) and Composition("ln_crelu").build(factory)(x).shape == (3, 6)
    width = crelu.body[-1](torch.ones(1, 4))  # [relu(x), relu(-x)]
    assert width.tolist() == [[1, 1, 1, 1, 0, 0, 0, 0]]


def test_two_hot_projection_round_trips_exactly_inside_the_range():
    from plasticity_bench.nets.values import hl_gauss, support, two_hot

    atoms = support(-10, 10, 51)
    values = torch.tensor([-10.0, -3.3, 0.0, 0.25, 7.77, 10.0])
    probs = two_hot(values, atoms)
    torch.testing.assert_close(probs.sum(1), torch.ones(6))
    torch.testing.assert_close((probs * atoms).sum(1), values)
    assert ((probs > 0).sum(1) <= 2).all()
    # clamped
    torch.testing.assert_close((two_hot(torch.tensor([25.0]), atoms) * atoms).sum(1), torch.tensor([10.0]))
    smooth = hl_gauss(torch.tensor([-3.3, 0.25]), atoms, sigma=0.3)
    torch.testing.assert_close((smooth * atoms).sum(1), torch.tensor([-3.3, 0.25]), atol=1e-3, rtol=0)


def test_categorical_head_gives_expected_q_values_and_a_cross_entropy_loss():
    factory = lambda **kw: build_network((4, 10, 10), 3, **kw)  # noqa: E731
    comp = Composition("two_hot", {"two_hot": {"bins": 11, "v_min": -5, "v_max": 5}})
    net, head = comp.build(factory), comp.value_head()
    outputs = net(torch.zeros(2, 4, 10, 10))
    assert outputs.shape == (2, 33) and head.expected(outputs).shape == (2, 3)
    loss = head.loss(outputs, torch.tensor([1.0, -2.0]), torch.tensor([0, 2]))
    logits = outputs.view(2, 3, 11)[[0, 1], [0, 2]]
    projected = two_hot(torch.tensor([1.0, -2.0]), torch.linspace(-5, 5, 11))
    torch.testing.assert_close(loss, -(projected * logits.log_softmax(-1)).sum(-1).mean())
    assert Composition("none").value_head().expected(outputs) is outputs
    scalar = Composition("none").value_head().loss(outputs, torch.tensor([1.0, -2.0]), torch.tensor([0, 2]))
    torch.testing.assert_close(scalar, F.mse_loss(outputs[[0, 1], [0, 2]], torch.tensor([1.0, -2.0])))
    with pytest.raises(ValueError, match="two_hot and hl_gauss cannot be composed"):
        split_name("two_hot_hl_gauss")


def test_l2_adds_the_gradient_of_coef_times_squared_norm():
    """The gradient terms equal autograd's through ``loss + coef ||theta||^2``, also for the
    parameters the loss does not reach (here the head: its gradient is the L2 term alone)."""
    torch.manual_seed(0)
    net, x = build_network((8,), 3), torch.randn(4, 8)
    reference = copy.deepcopy(net)
    (reference.body(x).sum() + 0.01 * sum(p.pow(2).sum() for p in reference.parameters())).backward()
    net.body(x).sum().backward()
    assert net.head.weight.grad is None
    Composition("l2", {"l2": {"coef": 0.01}}).gradients(net)
    for a, b in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def trained(net, inputs, steps=3):
    """``net`` with an Adam that has taken a few steps (non-zero moments everywhere)."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        net(inputs).pow(2).mean().backward()
        optimizer.step()
    return optimizer


def fake_agent(net, inputs):
    return types.SimpleNamespace(
        network=net,
        optimizer=trained(net, inputs),
        rng=np.random.default_rng(0),
        probe_inputs=lambda n, rng: inputs,
    )


def moments(optimizer, param):
    return optimizer.state[param]["exp_avg"], optimizer.state[param]["exp_avg_sq"]


def test_l2init_pulls_towards_the_saved_initial_weights():
    net = build_network((8,), 3)
    comp = Composition("l2init", {"l2init": {"coef": 0.5}})
    comp.gradients(net)  # the first call saves theta_0; there the term's gradient is 0
    assert all(torch.count_nonzero(p.grad) == 0 for p in net.parameters())
    initial = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    optimizer.zero_grad()
    comp.gradients(net)  # d/dtheta 0.5 ||theta - theta_0||^2 = theta - theta_0 = 1
    for p in net.parameters():
        torch.testing.assert_close(p.grad, torch.ones_like(p))
    optimizer.step()
    distance = sum((p - q).pow(2).sum() for p, q in zip(net.parameters(), initial))
    assert distance < 0.82 * sum(p.numel() for p in net.parameters())  # each weight moved 1 -> 0.9


def mlp_with_dead_units():
    """An MLP whose units 0-9 of fc1 are dead on every input, and 64 inputs."""
    torch.manual_seed(0)
    net, x = build_network((6,), 3, "mlp"), torch.randn(64, 6)
    with torch.no_grad():
        net.body.fc1.weight[:10] = 0
        net.body.fc1.bias[:10] = -1
    return net, x


def test_redo_recycles_exactly_the_dormant_units():
    net, x = mlp_with_dead_units()
    agent = fake_agent(net, x)
    _, activations, _ = capture(net, x)
    dormant = {name: dormant_scores(a) <= 0.1 for name, a in activations.items()}
    assert dormant["fc1"][:10].all()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    metrics = Composition("redo", {"redo": {"interval": 1, "tau": 0.1}}).after_update(agent, step=10)
    total = sum(len(m) for m in dormant.values())
    assert metrics["redo_reset_frac"] == pytest.approx(sum(int(m.sum()) for m in dormant.values()) / total)
    layers, incoming = ["fc1", "fc2", "fc3", "head"], torch.zeros(6, dtype=torch.bool)  # no dormant inputs
    for name, following in zip(layers, layers[1:]):
        mask, layer = dormant[name], net.get_submodule(f"body.{name}")
        nxt = net.get_submodule(following if following == "head" else f"body.{following}")
        old = before[f"body.{name}.weight"]
        assert not torch.equal(layer.weight[mask], old[mask])  # fresh incoming weights
        assert torch.equal(layer.weight[~mask][:, ~incoming], old[~mask][:, ~incoming])  # the rest untouched
        assert (nxt.weight[:, mask] == 0).all()  # outgoing weights zeroed
        exp_avg, exp_avg_sq = moments(agent.optimizer, layer.weight)
        assert (exp_avg[mask] == 0).all() and (exp_avg_sq[mask] == 0).all()
        assert (exp_avg_sq[~mask][:, ~incoming] != 0).any()  # moments of the others kept
        assert (moments(agent.optimizer, nxt.weight)[1][:, mask] == 0).all()
        incoming = mask
    assert optimizer_holds_exactly(agent.optimizer, net)


def test_redo_on_a_cnn_zeroes_the_flattened_columns_of_a_dead_channel():
    torch.manual_seed(0)
    net, x = build_network((4, 10, 10), 3, "minatar_cnn"), torch.rand(32, 4, 10, 10)
    with torch.no_grad():
        net.body.conv1.weight[2] = 0
        net.body.conv1.bias[2] = -1  # channel 2 dead
    agent = fake_agent(net, x)
    Composition("redo", {"redo": {"interval": 1, "tau": 0.0}}).after_update(agent, step=1)
    columns = net.body.fc2.weight.view(128, 16, 64)
    assert (columns[:, 2] == 0).all() and (columns[:, 3] != 0).any()
    assert (net.body.conv1.weight[2] != 0).any()


def test_reset_reinitialises_the_targeted_layers_only():
    net, x = build_network((6,), 3, "mlp"), torch.randn(16, 6)
    agent = fake_agent(net, x)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    comp = Composition("reset", {"reset": {"interval": 100, "layers": 2}})
    assert comp.after_update(agent, step=99) == {}
    assert comp.after_update(agent, step=100)["reset_layers"] == 2
    assert comp.after_update(agent, step=104) == {}  # fires once per crossing
    changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"body.fc3.weight", "body.fc3.bias", "head.weight", "head.bias"}
    for name in changed:
        assert all((m == 0).all() for m in moments(agent.optimizer, net.get_parameter(name)))
    assert (moments(agent.optimizer, net.body.fc1.weight)[1] != 0).any()
    assert optimizer_holds_exactly(agent.optimizer, net)


def test_shrink_perturb_mixes_in_a_fresh_initialisation():
    net, x = build_network((6,), 3, "mlp"), torch.randn(16, 6)
    agent = fake_agent(net, x)
    before = [p.detach().clone() for p in net.parameters()]
    torch.manual_seed(7)
    fresh = list(reinitialised(net).parameters())
    torch.manual_seed(7)
    Composition(
        "shrink_perturb", {"shrink_perturb": {"interval": 5, "alpha": 0.5, "sigma": 0.1}}
    ).after_update(agent, 5)
    for p, old, new in zip(net.parameters(), before, fresh):
        torch.testing.assert_close(p, 0.5 * old + 0.1 * new)
        assert all((m == 0).all() for m in moments(agent.optimizer, p))
    assert optimizer_holds_exactly(agent.optimizer, net)


def test_spectral_norm_normalises_the_penultimate_layer_only():
    torch.manual_seed(0)
    plain = build_network((6,), 3, "mlp")
    net = Composition("spectral_norm").build(lambda **kw: build_network((6,), 3, "mlp", **kw))
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in plain.parameters())
    with torch.no_grad():
        for _ in range(30):  # power iterations converge over training forwards
            net(torch.randn(8, 6))
        assert float(torch.linalg.matrix_norm(net.body.fc3.weight, 2)) == pytest.approx(1.0, abs=0.01)
    assert {name for name, m in weight_layers(net) if hasattr(m, "parametrizations")} == {"fc3"}
    raw = trained_weight(net.body.fc3)
    assert raw is net.body.fc3.parametrizations.weight.original and raw.requires_grad
    fresh = reinitialised(net.body.fc3)  # re-initialises the trained weight, not a computed copy
    assert not torch.equal(trained_weight(fresh), raw)
    assert float(trained_weight(fresh).detach().abs().max()) <= 1 / 256**0.5  # torch's Linear init bound
    resumed = Composition("spectral_norm").build(lambda **kw: build_network((6,), 3, "mlp", **kw))
    resumed.load_state_dict(net.state_dict())  # a checkpoint holds the power-iteration vectors too
    x = torch.randn(4, 6)
    torch.testing.assert_close(resumed.eval()(x), net.eval()(x))


def test_redo_recycles_units_of_a_spectral_normalised_layer():
    torch.manual_seed(0)
    net = Composition("spectral_norm").build(lambda **kw: build_network((6,), 3, "mlp", **kw))
    x = torch.randn(64, 6)
    with torch.no_grad():
        trained_weight(net.body.fc3)[:10] = 0
        net.body.fc3.bias[:10] = -1  # units 0-9 of fc3: dead on every input
    agent = fake_agent(net, x)
    Composition("redo", {"redo": {"interval": 1, "tau": 0.0}}).after_update(agent, step=1)
    assert (trained_weight(net.body.fc3)[:10] != 0).any(dim=1).all()
    assert (net.head.weight[:, :10] == 0).all()
    assert (moments(agent.optimizer, trained_weight(net.body.fc3))[1][:10] == 0).all()
    assert optimizer_holds_exactly(agent.optimizer, net)


def test_plasticity_injection_keeps_outputs_and_trains_only_the_new_head():
    comp = Composition("plasticity_injection", {"plasticity_injection": {"at": 100}})
    factory = lambda **kw: build_network((6,), 3, "mlp", **kw)  # noqa: E731
    net, target, x = comp.build(factory), comp.build(factory), torch.randn(16, 6)
    target.load_state_dict(net.state_dict())
    agent = AdamLearner(net, target, lr=1e-2)
    old = [*net.body.fc3.parameters(), *net.head.parameters()]  # the head: last hidden layer + output layer
    trainable_before = {id(p) for p in net.parameters() if p.requires_grad}
    assert {id(p) for p in old} <= trainable_before
    assert not {id(p) for p in net.new.parameters()} & trainable_before
    net(x).pow(2).mean().backward()
    agent.optimizer.step()
    body_state = {k: v.clone() for k, v in agent.optimizer.state[net.body.fc1.weight].items()}
    assert comp.after_update(agent, step=99) == {}
    before = net(x).detach()
    assert comp.after_update(agent, step=100)["plasticity_injected"] == 1
    torch.testing.assert_close(net(x), before)  # the output does not jump
    assert optimizer_holds_exactly(agent.optimizer, net)
    assert all(not p.requires_grad for p in old)
    assert all(torch.equal(v, agent.optimizer.state[net.body.fc1.weight][k]) for k, v in body_state.items())
    old_values = [p.clone() for p in old]
    agent.optimizer.zero_grad()
    net(x).pow(2).mean().backward()
    agent.optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(old_values, old))
    assert not torch.equal(net.new.head.weight, net.new_frozen.head.weight)
    assert torch.equal(target.new_frozen.head.weight, net.new_frozen.head.weight) and bool(target.active)
    resumed = comp.build(factory)  # a checkpoint loads into a freshly built network
    resumed.load_state_dict(net.state_dict())
    assert (
        bool(resumed.active)
        and not resumed.head.weight.requires_grad
        and resumed.new.head.weight.requires_grad
    )
    assert comp.after_update(agent, step=200) == {}  # once


def test_weight_clip_keeps_every_weight_within_kappa_times_its_init_bound():
    torch.manual_seed(0)
    net, x = build_network((4,), 3, "mlp", activation="leaky_relu", towers=(2, 1)), torch.randn(32, 4)
    optimizer = torch.optim.SGD(net.parameters(), lr=100.0)  # steps far past any bound
    agent = types.SimpleNamespace(network=net, optimizer=optimizer)
    comp = Composition("weight_clip", {"weight_clip": {"kappa": 1.5}})
    for _ in range(3):
        optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        optimizer.step()
        comp.after_update(agent, step=1)
    bounds = {
        "fc1": 1 / 2,
        "fc2": 1 / 16,
        "fc3": 1 / 16,
        "head": 1 / 16,
    }  # 1 / sqrt(fan-in): 4 inputs, then 256
    for name, bound in bounds.items():
        layer = net.get_submodule(name if name == "head" else f"body.{name}")
        for param in (layer.weight, layer.bias):
            assert param.abs().max() <= 1.5 * bound + 1e-7
            assert param.abs().max() > 1.4 * bound  # the steps pushed them to the limit


def test_after_plasticity_injection_the_probes_measure_the_injected_path():
    """Probes measure the layers that learn and act: after the injection, the encoder under the
    fresh hidden layers, not the frozen old ones (here all dead)."""
    from plasticity_bench.probes.units import unit_diagnostics

    torch.manual_seed(0)
    net = Composition("plasticity_injection").build(lambda **kw: build_network((6,), 3, "mlp", **kw))
    x = torch.randn(64, 6)
    with torch.no_grad():  # the old last hidden layer: every unit dead
        net.body.fc3.weight.zero_()
        net.body.fc3.bias.fill_(-1.0)

    def dead():
        return dict(((m, layer), v) for m, layer, v in unit_diagnostics(net, x))[("dormant_frac@0.0", "fc3")]

    assert dead() == 1.0
    net.inject()
    assert dead() < 0.2 and [n for n, _ in net.acting_body().named_children()] == [
        n for n, _ in net.body.named_children()
    ]
    assert net.acting_body().fc3 is net.new.trunk[0] and net.acting_body().fc1 is net.body.fc1


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
