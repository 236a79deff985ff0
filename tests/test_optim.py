import pytest
import torch

from plasticity_bench.nets import fast, optim
from plasticity_bench.nets.optim import CenteredRMSprop


def test_matches_torch_centred_rmsprop():
    torch.manual_seed(0)
    ours_params = [torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    theirs_params = [p.detach().clone().requires_grad_(True) for p in ours_params]
    ours = CenteredRMSprop(ours_params, lr=1e-2, alpha=0.95, eps=0.01)
    theirs = torch.optim.RMSprop(theirs_params, lr=1e-2, alpha=0.95, eps=0.01, centered=True)
    for _ in range(50):
        for a, b in zip(ours_params, theirs_params):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        ours.step()
        theirs.step()
    for a, b in zip(ours_params, theirs_params):
        torch.testing.assert_close(a, b)
        assert set(ours.state[a]) == set(theirs.state[b])
        torch.testing.assert_close(ours.state[a]["step"], theirs.state[b]["step"])


def test_constant_gradient_stays_finite():
    p = torch.ones(1000, requires_grad=True)
    opt = CenteredRMSprop([p], lr=2.5e-4)
    for _ in range(500):
        p.grad = torch.full_like(p, 2e-5) * p.detach()  # an L2 gradient alone
        opt.step()
    assert torch.isfinite(p).all()


def _trained_copies(seed=0):
    torch.manual_seed(seed)
    shapes = [(16, 4, 3, 3), (16,), (128, 64), (128,), (3, 128), (3,)]
    params = [torch.randn(s, requires_grad=True) for s in shapes]
    grads = [[torch.randn(s) * (torch.rand(s) < 0.7) for s in shapes] for _ in range(20)]
    return params, grads


@pytest.fixture
def compiling(monkeypatch):
    """Compile as a run does (the suite's default is eager, see conftest), from a fresh start."""
    monkeypatch.delenv("TORCHDYNAMO_DISABLE")
    monkeypatch.setattr(optim, "_compiled", {"update": None, "works": None})
    with torch._dynamo.config.patch(disable=False):
        yield


def test_the_compiled_update_is_the_eager_update(monkeypatch, compiling):
    """The fused (torch.compile) step on the CPU and the eager foreach step, which CUDA and a
    machine without a C++ compiler take, give the same parameters, state and gradient norm."""
    runs = {}
    for works in (None, False):  # None: build and use the compiled update; False: eager
        monkeypatch.setattr(optim, "_compiled", {"update": None, "works": works})  # (the test's own)
        params, grads = _trained_copies()
        opt = CenteredRMSprop(params, lr=1e-2, alpha=0.95, eps=0.01)
        norms = []
        for g in grads:
            for p, gi in zip(params, g):
                p.grad = gi.clone()
            norms.append(opt.step_and_norm())
        runs[works] = (params, opt, norms)
        if works is None:
            assert optim._compiled["works"] is True, (
                "torch.compile did not build the update (a C++ compiler?)"
            )
            assert optim._compiled["update"] is not optim._per_tensor_update  # compiled, not passed through
    (p1, o1, n1), (p2, o2, n2) = runs[None], runs[False]
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a, b)
        for key in ("square_avg", "grad_avg", "step"):
            torch.testing.assert_close(o1.state[a][key], o2.state[b][key])
    torch.testing.assert_close(torch.stack(n1), torch.stack(n2))
    torch.testing.assert_close(n1[-1], torch.nn.utils.get_total_norm(grads[-1]))


def test_without_a_compiler_the_step_warns_once_and_runs_eager(monkeypatch):
    def no_compiler(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler here\nsecond line")

        return fail

    monkeypatch.setattr(optim, "_compiled", {"update": None, "works": None})
    monkeypatch.setattr(torch, "compile", no_compiler)
    params, grads = _trained_copies()
    before = [p.detach().clone() for p in params]
    opt = CenteredRMSprop(params, lr=1e-2)
    for p, g in zip(params, grads[0]):
        p.grad = g
    with pytest.warns(UserWarning, match="no C.. compiler here.*eager foreach"):
        opt.step()
    assert optim._compiled["works"] is False
    assert all(not torch.equal(a, b) for a, b in zip(params, before))  # the step was taken, once
    assert all(opt.state[p]["step"].item() == 1 for p in params)


def test_another_learning_rate_does_not_compile_again(compiling):
    """A sweep's worker trains one network after another: the hyper-parameters are inputs of the
    compiled update, not constants in it."""
    graphs = []
    for lr, alpha in ((1e-2, 0.95), (3e-3, 0.9)):
        params, grads = _trained_copies()
        opt = CenteredRMSprop(params, lr=lr, alpha=alpha)
        for p, g in zip(params, grads[0]):
            p.grad = g
        opt.step()
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert optim._compiled["works"] is True and graphs[1] == graphs[0]


def test_the_compiled_rmsprop_setting_off_takes_the_eager_step_without_compiling(monkeypatch, compiling):
    """speed.compiled_rmsprop=false (nets/fast.py): nothing is compiled, and the step is the eager
    one the compiled step is held to above."""
    monkeypatch.setattr(fast.SPEED, "compiled_rmsprop", False)
    params, grads = _trained_copies()
    opt = CenteredRMSprop(params, lr=1e-2, alpha=0.95, eps=0.01)
    for p, g in zip(params, grads[0]):
        p.grad = g.clone()
    assert not optim.fused_update_works(params)
    opt.step_and_norm()
    assert optim._compiled == {"update": None, "works": None}  # never built, never tried
