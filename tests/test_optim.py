import torch

from agents.optim import CenteredRMSprop


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
