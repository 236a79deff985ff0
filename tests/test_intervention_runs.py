"""Every agent with every intervention in a short real run, their interval hooks made to fire:
the optimizer holds exactly the trainable parameters after each hook, and the CSVs name the run."""

import pandas as pd
import pytest

from conftest import fires_often
from plasticity_bench import agents
from plasticity_bench.agents.base import has_network
from plasticity_bench.interventions import INTERVENTIONS, Composition, split_name
from plasticity_bench.nets.surgery import optimizer_holds_exactly
from plasticity_bench.runner.config import compose_config
from plasticity_bench.runner.loop import Run

SMOKE_INTERVENTIONS = ["none", *sorted(INTERVENTIONS), "ln_l2"]
HOOK_METRICS = {
    "redo": "redo_reset_frac",
    "reset": "reset_layers",
    "shrink_perturb": "shrink_perturb_applied",
    "plasticity_injection": "plasticity_injected",
}


@pytest.mark.parametrize("agent", sorted(a for a, cls in agents.AGENTS.items() if has_network(cls)))
@pytest.mark.parametrize("intervention", SMOKE_INTERVENTIONS)
def test_every_agent_runs_with_every_intervention(tmp_path, monkeypatch, agent, intervention):
    overrides = [
        f"agent={agent}",
        f"intervention={intervention}",
        "total_steps=400",
        "log.interval=100",
        "log.progress=false",
        f"run_dir={tmp_path}",
        "env.num_envs=2",
        *fires_often(),
        *agents.AGENTS[agent].quick_overrides,
    ]  # each agent says how it updates within 400 steps
    if agent == "dqn":  # Polyak target updates (tau < 1) every 50 updates
        overrides += ["agent.tau=0.5", "agent.target_update_interval=50"]
    fired = []
    real = Composition.after_update

    # after every hook that acted, the optimizer holds exactly the trainables
    def checked(self, learner, step):
        metrics = real(self, learner, step)
        if metrics:
            assert optimizer_holds_exactly(learner.optimizer, learner.network), (metrics, step)
            fired.extend(metrics)
        return metrics

    monkeypatch.setattr(Composition, "after_update", checked)
    real_gradients, graded = Composition.gradients, []
    monkeypatch.setattr(
        Composition, "gradients", lambda self, network: graded.append(real_gradients(self, network))
    )
    run = Run(compose_config(overrides))
    assert run.train() == 0
    if run.agent.network is not None:
        assert run.agent.optimizer.state, "the agent never updated: its quick_overrides are too slow"
        assert graded, "the agent never called interventions.gradients: l2 and l2init would do nothing"
        assert optimizer_holds_exactly(run.agent.optimizer, run.agent.network)
        expected = {HOOK_METRICS[f] for f in split_name(intervention) if f in HOOK_METRICS}
        assert expected <= set(fired), f"interval hooks that never fired: {expected - set(fired)}"
    d = run.dir
    assert d.parent.name.split("[")[0] == intervention
    returns = pd.read_csv(d / "returns.csv")
    assert (returns["intervention"] == intervention).all() and (d / "done").exists()


@pytest.mark.parametrize(
    "intervention",
    ["redo", "ln_l2", "reset", "weight_clip", "l2init", "shrink_perturb", "plasticity_injection", "two_hot"],
)
def test_separate_policy_and_value_networks_take_the_interventions(tmp_path, intervention):
    """The classic preset's two towers (agents/ppo.py separate_networks) under each kind of surgery
    and architecture change: a short run, its hooks firing, the optimizer consistent."""
    overrides = [
        "env=classic",
        "agent=ppo",
        f"intervention={intervention}",
        "total_steps=1600",
        "agent.num_steps=200",
        "agent.num_minibatches=5",
        "log.progress=false",
        f"run_dir={tmp_path}",
        "probe.interval=800",
        "probe.steps=5",
        "probe.batch_size=32",
        "probe.entk_batch=8",
        *fires_often(),
    ]
    run = Run(compose_config(overrides))
    assert run.cfg.agent.separate_networks and run.train() == 0
    assert optimizer_holds_exactly(run.agent.optimizer, run.agent.network)
    probes = pd.read_csv(run.dir / "metrics.csv")
    assert {"probe_loss", "feature_srank", "reset_layers" if intervention == "reset" else "loss"} <= set(
        probes.metric
    )


@pytest.mark.parametrize("agent", sorted(agents.AGENTS))
def test_every_agent_runs_on_the_classic_suite(tmp_path, agent):
    overrides = [
        "env=classic",
        f"agent={agent}",
        "env.game=Acrobot",
        "total_steps=600",
        "log.interval=100",
        "log.progress=false",
        f"run_dir={tmp_path}",
        "probe.interval=300",
        "probe.steps=5",
        "probe.batch_size=32",
        "probe.entk_batch=8",
        *agents.AGENTS[agent].quick_overrides,
    ]
    if agent == "ppo":
        overrides += ["agent.num_steps=100", "agent.num_minibatches=4"]
    run = Run(compose_config(overrides))
    assert run.train() == 0
    returns = pd.read_csv(run.dir / "returns.csv")
    # presets cut at 400 (Acrobot's own: 500)
    assert returns.episode_length.max() == 500 if agent == "random" else 400
    if run.agent.network is not None:
        assert run.agent.optimizer.state and "probe_loss" in set(pd.read_csv(run.dir / "metrics.csv").metric)
