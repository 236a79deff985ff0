"""The stacked kernel of a population (``population_kernel=stacked``): the K members' updates as
one model, where a GPU pays (one batched forward and backward and one optimizer step for the K
seeds instead of K small ones).

The members stay ordinary agents: their parameters, gradients and optimizer moments become
views of stacked tensors ``[K, ...]``, so whatever reads or changes one seed's network (acting,
probes, checkpoints, the surgeries: redo, reset, shrink_perturb, weight_clip) works on its slice
as it did. An update here is the agent's own algorithm split where the batch is formed:

1. each agent draws its batch (``sample``, with its own RNG);
2. ``torch.func.vmap`` of ``grad_and_value`` of the agent's ``loss(batch)`` over the stacked
   parameters, through the first agent's modules (``functional_call``): the K losses, metrics
   and gradients in one call;
3. each seed's gradient terms (``interventions.gradients``: l2, l2init), its gradient norm and
   clipping (per seed, on its slice);
4. one step of the agents' optimizer class over the stacked tensors: Adam and centred RMSProp
   are elementwise, so one step over ``[K, ...]`` is K independent steps;
5. each seed's interventions that act after an update, and its ``finish_update`` (DQN's
   target sync; the update's metrics).

When an intervention replaces a parameter or the optimizer (plasticity injection, a reset's
fresh optimizer) the stack is built again from the agents. The kernels differ from one seed's
(a batched matrix product for a matrix product, a grouped convolution for a convolution), so
floats round differently from the separate runs; ``tests/test_population.py`` measures by how much.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.utils._pytree import tree_map

from plasticity_bench.agents.base import average_updates
from plasticity_bench.nets.networks import eval_mode
from plasticity_bench.runner.store import RunError

STACKED_METHODS = ("remember", "sample", "loss", "finish_update")
# an agent that also splits its acting (DQN: epsilon-greedy) acts for every seed in one forward
ACTING_METHODS = ("exploring", "q_values", "epsilon_greedy")


def stackable(agent_cls: type) -> bool:
    """Whether an agent splits its update as the stacked kernel needs (DQN and PPO do)."""
    return all(callable(getattr(agent_cls, m, None)) for m in STACKED_METHODS)


class _Networks(nn.Module):
    """The first agent's network and target as one module: ``loss(batch)`` as its forward."""

    def __init__(self, agent):
        super().__init__()
        self.network = agent.network
        if agent.target is not None:
            self.target = agent.target
        object.__setattr__(self, "agent", agent)  # not a submodule

    def forward(self, batch):
        return self.agent.loss(batch)


class _Acting(nn.Module):
    """The first agent's network with ``q_values(obs)`` as its forward."""

    def __init__(self, agent):
        super().__init__()
        self.network = agent.network
        object.__setattr__(self, "agent", agent)

    def forward(self, obs):
        return self.agent.q_values(obs)


class StackedLearning:
    def __init__(self, members, own_rng):
        self.members, self.own_rng = members, own_rng
        self.stack()

    # ---- the stack ------------------------------------------------------------------------
    def stack(self) -> None:
        """Stacked copies of the agents' tensors, and each agent's tensors made views of them."""
        agents = [m.agent for m in self.members]
        self.template, self.acting = _Networks(agents[0]), _Acting(agents[0])
        # per seed: name -> its parameter (or buffer), names as functional_call takes them
        names = [dict(_Networks(a).named_parameters()) for a in agents]
        buffers = [dict(_Networks(a).named_buffers()) for a in agents]
        # the names the optimizer trains (a frozen branch, the target network: the others)
        trained = {id(p) for group in agents[0].optimizer.param_groups for p in group["params"]}
        self.trained = [n for n, p in names[0].items() if id(p) in trained]
        self.frozen = [n for n in names[0] if n not in self.trained]
        self.params = {n: self._bind([a[n] for a in names]) for n in names[0]}
        # flags and counters the seeds share (plasticity injection's ``active``) stay the first
        # agent's own: a branch on them inside vmap is a branch on one value
        self.buffers = {
            n: self._bind([b[n] for b in buffers])
            for n, t in buffers[0].items()
            if t.is_floating_point() or any(not torch.equal(t, b[n]) for b in buffers)
        }
        # gradients: one stacked tensor per trained name, the stack's .grad, each seed's .grad a slice
        self.grads = {n: torch.zeros_like(self.params[n]) for n in self.trained}
        for n in self.trained:
            self.params[n].grad = self.grads[n]
            for k, names_k in enumerate(names):
                names_k[n].grad = self.grads[n][k]
        # one optimizer of the agents' class over the stacks; the agents' own keep their states
        self.optimizers = [a.optimizer for a in agents]
        self.param_lists = [[p for g in a.optimizer.param_groups for p in g["params"]] for a in agents]
        first = agents[0].optimizer
        stacked_params = [self.params[n] for n in self.trained]
        accepted = inspect.signature(type(first)).parameters  # (a loaded optimizer's defaults
        hyper = {k: v for k, v in first.defaults.items() if k in accepted}  # hold torch's extra keys)
        self.optimizer = type(first)(stacked_params, **hyper)
        by_name = {id(p): n for n, p in names[0].items()}
        self.order = [by_name[id(p)] for p in self.param_lists[0]]  # the optimizer's order
        if first.state:
            self._stack_optimizer_state(agents)
        self.bound = False  # (after the next step: states it creates lazily get their views too)

    def _bind(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """A stacked copy of ``tensors``, each of them then made a view of its slice: ``.data =``
        keeps the tensor object (the optimizer's keys, the interventions' references) and changes
        its storage. What writes a seed's tensors in place (surgeries, target syncs, loading a
        state) writes the stack; what replaces one (a new optimizer, a new parameter) is found by
        ``changed()`` after an intervention acts, and the stack is built again."""
        stacked = torch.stack([t.detach() for t in tensors])
        for k, t in enumerate(tensors):
            t.data = stacked[k]
        return stacked

    def _stack_optimizer_state(self, agents) -> None:
        for name, stacked in self.params.items():
            if name not in self.trained:
                continue
            index = self.order.index(name)
            states = [a.optimizer.state[self.param_lists[k][index]] for k, a in enumerate(agents)]
            new = {}
            for key, value in states[0].items():
                if torch.is_tensor(value) and value.dim() == stacked.dim() - 1:
                    new[key] = self._bind([s[key] for s in states])
                else:  # the step count, the same for every seed (they update in lockstep)
                    if any(not torch.equal(torch.as_tensor(s[key]), torch.as_tensor(value)) for s in states):
                        raise RuntimeError(f"the seeds' optimizer '{key}' differs; they cannot step as one")
                    new[key] = value
                    for s in states:
                        s[key] = value
            self.optimizer.state[stacked] = new

    def _bind_optimizer_state(self) -> None:
        """After the stacked optimizer's first step: each agent's state as views of its state."""
        for k, agent in enumerate(m.agent for m in self.members):
            for index, name in enumerate(self.order):
                state = self.optimizer.state[self.params[name]]
                agent.optimizer.state[self.param_lists[k][index]] = {
                    key: value[k]
                    if torch.is_tensor(value) and value.dim() == self.params[name].dim()
                    else value
                    for key, value in state.items()
                }
        self.bound = True

    def changed(self) -> bool:
        """Whether an intervention replaced an optimizer or a parameter since ``stack()``."""
        for k, member in enumerate(self.members):
            optimizer = member.agent.optimizer
            params = [p for g in optimizer.param_groups for p in g["params"]]
            if optimizer is not self.optimizers[k] or len(params) != len(self.param_lists[k]):
                return True
            if any(
                p is not q or p.data_ptr() != self.params[n][k].data_ptr()
                for p, q, n in zip(params, self.param_lists[k], self.order)
            ):
                return True
        return False

    # ---- one step of the population -------------------------------------------------------
    def advance(self, running) -> list:
        """Act for every member and step its envs, then learn as one (the members are in lockstep);
        returns (member, RunError) for each member that failed."""
        before, due = [m.step for m in running], []
        for member, actions in zip(running, self.act(running)):
            with self.own_rng(member):
                transition = member.interact(actions)
                due.append(member.agent.remember(*transition, member.step))
        if len(set(due)) > 1:
            raise RuntimeError(
                f"the seeds owe different numbers of updates ({due}); they must learn in lockstep"
            )
        updates = [[] for _ in running]
        for _ in range(due[0]):
            for k, result in enumerate(self.update(running, running[0].step)):
                updates[k].append(result)
        tasks, errors = [m.task for m in running], []
        for member, start, results in zip(running, before, updates):
            try:
                with self.own_rng(member):
                    member.record(start, average_updates(results))
            except RunError as error:  # (a non-finite metric: the population drops that seed)
                errors.append((member, error))
        if not errors and tasks != [m.task for m in running] and self.changed():
            self.stack()  # (a task switch's interventions may have rebuilt networks or optimizers)
        return errors

    def act(self, running) -> list:
        """Each member's actions, the greedy ones from one forward of the stacked networks (one
        transfer from the device); None for an agent that acts on its own (``Run.interact``)."""
        agents = [m.agent for m in running]
        if not all(callable(getattr(a, name, None)) for a in agents for name in ACTING_METHODS):
            return [None] * len(running)
        explore = [a.exploring(m.step) for a, m in zip(agents, running)]
        if all(e.all() for e in explore):
            return [a.epsilon_greedy(e, None) for a, e in zip(agents, explore)]
        device = agents[0].device
        obs = torch.as_tensor(np.stack([m.obs for m in running]), device=device)
        network = {n: t for n, t in {**self.params, **self.buffers}.items() if n.startswith("network.")}

        def q_values(tensors, obs):
            return functional_call(self.acting, tensors, (obs,))

        with torch.inference_mode(), eval_mode(self.acting.network):
            greedy = vmap(q_values)(network, obs).argmax(-1).cpu().numpy()
        return [a.epsilon_greedy(e, None if e.all() else g) for a, e, g in zip(agents, explore, greedy)]

    def update(self, running, step: int) -> list[tuple[dict, dict]]:
        agents = [m.agent for m in running]
        if len(running) != len(self.members):
            raise RuntimeError("a population's seeds stop together (they share total_steps)")
        # batches drawn on the host (DQN's replay) are stacked there and copied to the device once
        host = torch.device("cpu") if getattr(agents[0], "batches_on_host", False) else None
        batches = [a.sample(host) for a in agents]
        batch = {key: torch.stack([b[key] for b in batches]) for key in batches[0]}
        if agents[0].device.type == "cuda":
            batch = {k: v.pin_memory().to(agents[0].device, non_blocking=True) for k, v in batch.items()}
        frozen = {**{n: self.params[n] for n in self.frozen}, **self.buffers}

        def seed_loss(trained, frozen, batch):
            loss, metrics = functional_call(self.template, {**trained, **frozen}, (batch,))
            return loss, (loss.detach(), metrics)

        grads, (_, (losses, metrics)) = vmap(grad_and_value(seed_loss, has_aux=True))(
            {n: self.params[n] for n in self.trained}, frozen, batch
        )
        with torch.no_grad():
            for name, grad in grads.items():
                self.grads[name].copy_(grad)
            norms = self._gradient_terms_and_clip(agents)
            for group in self.optimizer.param_groups:
                group["lr"] = agents[0].optimizer.param_groups[0]["lr"]
            self.optimizer.step()
        if not self.bound:
            self._bind_optimizer_state()
        results, acted_any = [], False
        for k, (member, agent) in enumerate(zip(running, agents)):
            with self.own_rng(member):
                acted = agent.interventions.after_update(agent, step)
                seed_metrics = tree_map(lambda value: value[k], metrics)
                results.append((agent.finish_update(losses[k], seed_metrics, norms[k]), acted))
            acted_any |= bool(acted)
        if acted_any and self.changed():
            self.stack()
        return results

    def _gradient_terms_and_clip(self, agents) -> torch.Tensor:
        """Each seed's gradient terms (l2, l2init act on its slice), then the per-seed norms
        before clipping, and clipping per seed. Returns the K norms."""
        for agent in agents:
            agent.interventions.gradients(agent.network)
        k = len(agents)
        norms = torch.stack([g.reshape(k, -1).pow(2).sum(1) for g in self.grads.values()]).sum(0).sqrt()
        max_norm = agents[0].cfg.max_grad_norm
        if max_norm > 0:
            scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
            for g in self.grads.values():
                g.mul_(scale.view(k, *([1] * (g.dim() - 1))))
        return norms
