"""The speed paths (nets/fast.py) compute what the plain paths compute: the MinAtar CNN's
convolution through gathered patches (PatchConv2d) has the library convolution's function and
gradients wherever the network is used; the Nature CNN laid out channels-last and taking its
pixels NHWC computes the same function. Each setting is tested both ways."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from plasticity_bench.nets import fast
from plasticity_bench.nets.fast import PatchConv2d
from plasticity_bench.nets.networks import build_network, eval_mode, reinitialised

PATCH_INDEX = fast.patch_index


def grids(n: int) -> torch.Tensor:
    return (torch.rand(n, 4, 10, 10, generator=torch.Generator().manual_seed(n)) < 0.3).float()


def test_patch_convolution_has_the_library_convolutions_outputs_and_gradients():
    torch.manual_seed(0)
    conv, x = PatchConv2d(4, 16, 3), grids(32)
    out = conv(x)
    assert out.grad_fn.name() != "ConvolutionBackward0"  # the patches path ran
    assert out.is_contiguous()  # laid out as the library's (N, C, H, W): Flatten is a view
    reference = F.conv2d(x, conv.weight, conv.bias)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    weight_grad, bias_grad = torch.autograd.grad(out, (conv.weight, conv.bias), g)
    ref_weight_grad, ref_bias_grad = torch.autograd.grad(reference, (conv.weight, conv.bias), g)
    torch.testing.assert_close(weight_grad, ref_weight_grad, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(bias_grad, ref_bias_grad, rtol=1e-5, atol=1e-4)


def test_patch_convolution_on_non_square_float64_inputs_without_bias_and_batch_one():
    """Rows and columns are not interchangeable (a 7 x 12 input), float64 as the eNTK probe
    runs, no bias, one example as when acting."""
    torch.manual_seed(0)
    conv = PatchConv2d(3, 5, 3).double()
    conv.bias = None
    for n in (1, 6):
        x = torch.randn(n, 3, 7, 12, dtype=torch.float64, requires_grad=True)
        out = conv(x)
        assert out.grad_fn.name() != "ConvolutionBackward0" and out.shape == (n, 5, 5, 10)
        reference = F.conv2d(x, conv.weight)
        torch.testing.assert_close(out, reference)
        g = torch.randn_like(out)
        torch.testing.assert_close(
            torch.autograd.grad(out, (x, conv.weight), g), torch.autograd.grad(reference, (x, conv.weight), g)
        )


def test_batches_past_the_patch_limit_use_the_library_kernel():
    conv = PatchConv2d(4, 16, 3)
    assert conv(grids(fast.PATCH_MAX_BATCH)).grad_fn.name() != "ConvolutionBackward0"
    assert conv(grids(fast.PATCH_MAX_BATCH + 1)).grad_fn.name() == "ConvolutionBackward0"


def test_patch_convolution_gives_the_library_input_gradient_and_no_grad_outputs():
    torch.manual_seed(0)
    conv, x = PatchConv2d(4, 16, 3), grids(8)
    with torch.no_grad():  # acting, the target network
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias), rtol=1e-5, atol=1e-5)
    x.requires_grad_(True)
    out = conv(x)
    g = torch.randn_like(out)
    (input_grad,) = torch.autograd.grad(out, x, g)
    (ref_input_grad,) = torch.autograd.grad(F.conv2d(x, conv.weight, conv.bias), x, g)
    torch.testing.assert_close(input_grad, ref_input_grad, rtol=1e-5, atol=1e-5)


def test_a_network_that_first_acts_in_inference_mode_then_trains(monkeypatch):
    """The patch index is cached at its first use; built while acting (inference mode), it
    must still serve a forward that saves it for the backward pass (one with an input gradient)."""
    network = build_network((4, 10, 10), 6)
    monkeypatch.setattr(fast, "_PATCH_INDEX", {})  # (building the network ran a forward: start empty)
    with torch.inference_mode():
        network(grids(1))
    x = grids(4).requires_grad_(True)
    network(x).sum().backward()
    assert network.body.conv1.weight.grad is not None and x.grad is not None


def test_the_minatar_cnn_uses_patches_and_the_nature_cnn_does_not():
    minatar = build_network((4, 10, 10), 6)
    assert type(minatar.body.conv1) is PatchConv2d and isinstance(minatar.body.conv1, nn.Conv2d)
    assert set(minatar.body.conv1.state_dict()) == {"weight", "bias"}  # checkpoints are unchanged
    atari = build_network((4, 84, 84), 6)
    assert all(type(m) is nn.Conv2d for m in atari.modules() if isinstance(m, nn.Conv2d))


def test_per_example_gradients_under_vmap_match_the_library_convolution(monkeypatch):
    """The eNTK probe differentiates one example at a time with torch.func: the patches path
    runs there too and gives the library's per-example gradients."""
    torch.manual_seed(0)
    network = build_network((4, 10, 10), 6)
    params = {k: v.detach() for k, v in network.named_parameters()}
    x = grids(5)

    def per_example_grads():
        q0 = lambda p, example: functional_call(network, p, (example[None],))[0, 0]  # noqa: E731
        return vmap(grad(q0), in_dims=(None, 0))(params, x)

    gathered = []
    monkeypatch.setattr(fast, "patch_index", lambda *a: gathered.append(a) or PATCH_INDEX(*a))
    ours = per_example_grads()
    assert gathered  # the patches path ran under vmap(grad)
    monkeypatch.setattr(PatchConv2d, "_conv_forward", nn.Conv2d._conv_forward)
    library = per_example_grads()
    for name in params:
        torch.testing.assert_close(ours[name], library[name], rtol=1e-5, atol=1e-5)


def test_the_nature_cnn_takes_its_pixels_channels_last_with_the_same_function():
    """ToFloat casts pixels straight into the NHWC layout of the Nature CNN's weights (no copy
    inside the first convolution), and the network computes what it did on NCHW floats,
    also per example under vmap (the eNTK probe)."""
    torch.manual_seed(0)
    network = build_network((4, 84, 84), 6, obs_scale=1 / 255)
    pixels = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    floats = network.body.scale(pixels)
    assert floats.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(floats, pixels.float() / 255)
    plain_input = network.body[1:](pixels.float() / 255)  # everything after ToFloat, on an NCHW input
    torch.testing.assert_close(network.body(pixels), plain_input)
    params = {k: v.detach() for k, v in network.named_parameters()}
    q0 = lambda p, example: functional_call(network, p, (example[None],))[0, 0]  # noqa: E731
    per_example = vmap(grad(q0), in_dims=(None, 0))(params, pixels)
    first = grad(q0)(params, pixels[0])
    for name in params:
        torch.testing.assert_close(per_example[name][0], first[name])
    assert not build_network((4, 10, 10), 6).body.scale.channels_last  # MinAtar grids stay as they are


def test_nature_cnn_is_channels_last_and_computes_the_same_function():
    net = build_network((4, 84, 84), 4, obs_scale=1 / 255)
    assert all(
        m.weight.is_contiguous(memory_format=torch.channels_last)
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d)
    )
    nchw = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    x = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    torch.testing.assert_close(net(x), nchw(x), rtol=1e-4, atol=1e-5)
    fresh = reinitialised(net)  # surgery keeps the layout
    assert fresh.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def separate_mlps(net: nn.Module, actions: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The two networks a two-tower network is, rebuilt from its blocks as plain layers."""
    towers = []
    for t, rows in enumerate([slice(0, 256), slice(256, 512)]):
        layers = []
        for name in ("fc1", "fc2", "fc3"):
            layer = net.body.get_submodule(name)
            linear = nn.Linear(layer.weight.shape[1], 256)
            linear.weight.data, linear.bias.data = layer.weight[rows].clone(), layer.bias[rows].clone()
            layers += [linear, nn.LeakyReLU(0.1)]
        head = nn.Linear(256, actions if t == 0 else 1)
        out = net.head.rows(t)
        head.weight.data, head.bias.data = net.head.weight[out].clone(), net.head.bias[out].clone()
        towers.append(nn.Sequential(*layers, head))
    return towers[0], towers[1]


def test_two_towers_are_two_separate_networks():
    torch.manual_seed(0)
    net = build_network((4,), 3, "mlp", activation="leaky_relu", towers=(2, 1))
    actor, critic = separate_mlps(net, 2)
    x = torch.randn(16, 4)
    torch.testing.assert_close(net(x), torch.cat([actor(x), critic(x)], 1))
    net(x)[:, 2].sum().backward()  # the value's gradient reaches the value tower only
    for name in ("fc2", "fc3"):
        grad_ = net.body.get_submodule(name).weight.grad
        assert (grad_[:256] == 0).all() and (grad_[256:] != 0).any()
    assert (net.head.weight.grad[:2] == 0).all() and (net.body.fc1.weight.grad[:256] == 0).all()
    # each block is initialised as a 256-input nn.Linear is: U(-1/16, 1/16)
    assert net.body.fc2.weight.abs().max() <= 1 / 16 and net.body.fc2.weight.abs().max() > 0.06


def test_tower_layernorm_normalises_each_tower_apart():
    torch.manual_seed(0)
    net = build_network((4,), 3, "mlp", layer_norm=True, towers=(2, 1))
    x = torch.randn(8, 4)
    features = net.body[:4](x)  # scale, flatten, fc1, norm1
    for tower in (features[:, :256], features[:, 256:]):
        torch.testing.assert_close(tower.mean(1), torch.zeros(8), atol=1e-5, rtol=0)
        torch.testing.assert_close(tower.var(1, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)


def test_dormant_scores_of_separate_towers_are_each_against_their_own_tower():
    from plasticity_bench.nets.capture import dormant_scores, towers

    net = build_network((4,), 3, "mlp", towers=(2, 1))
    assert towers(net) == 2 and towers(build_network((4,), 3, "mlp")) == 1
    activation = torch.cat([torch.full((8, 256), 0.01), torch.full((8, 256), 100.0)], 1)  # two scales
    assert torch.allclose(dormant_scores(activation, 2), torch.ones(512))  # each unit at its tower's mean
    assert (dormant_scores(activation)[:256] < 0.001).all()  # judged across towers, one would look dormant


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


@pytest.mark.parametrize(
    "arch, shape, setting",
    [("minatar_cnn", (4, 10, 10), "patch_conv"), ("nature_cnn", (4, 84, 84), "channels_last")],
)
def test_each_speed_path_can_be_turned_off_and_computes_the_same(arch, shape, setting, monkeypatch):
    torch.manual_seed(0)
    fast_net = build_network(shape, 6, arch, 1 / 255 if arch == "nature_cnn" else 1.0)
    monkeypatch.setattr(fast.SPEED, setting, False)
    plain = build_network(shape, 6, arch, 1 / 255 if arch == "nature_cnn" else 1.0)
    plain.load_state_dict(fast_net.state_dict())
    kinds = {type(m) for m in plain.modules()}
    assert PatchConv2d not in kinds and all(p.is_contiguous() for p in plain.parameters())
    x = torch.randint(0, 255, (8, *shape)).float() if arch == "nature_cnn" else grids(8)
    torch.testing.assert_close(plain(x), fast_net(x), rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(fast.SPEED, setting, True)
    assert (PatchConv2d in {type(m) for m in build_network(shape, 6, arch).modules()}) == (
        setting == "patch_conv"
    )
