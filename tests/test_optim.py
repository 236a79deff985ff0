import torch

from agents.optim import CenteredRMSprop


def test_matches_torch_centred_rmsprop():
    torch.manual_seed(0)
    a, b = torch.randn(5, 3, requires_grad=True), None
    b = a.detach().clone().requires_grad_(True)
    ours, theirs = CenteredRMSprop([a], lr=1e-2, alpha=0.95, eps=0.01), torch.optim.RMSprop([b], lr=1e-2, alpha=0.95, eps=0.01, centered=True)
    for _ in range(50):
        g = torch.randn(5, 3)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(a, b)
    assert set(ours.state[a]) == set(theirs.state[b])


def test_constant_gradient_stays_finite():
    p = torch.ones(1000, requires_grad=True)
    opt = CenteredRMSprop([p], lr=2.5e-4)
    for _ in range(500):
        p.grad = torch.full_like(p, 2e-5) * p.detach()  # an L2 gradient alone
        opt.step()
    assert torch.isfinite(p).all()
