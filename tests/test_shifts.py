"""The shifts suite: what each task changes, the run directory it writes, exact resume, errors."""

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

import plasticity_bench.shifts.train as shifts_train
from conftest import ROOT
from plasticity_bench.shifts.tasks import TASKS, digits
from plasticity_bench.shifts.train import ShiftsConfig, config_from, run_path, train

SMALL = [
    "tasks=3",
    "steps_per_task=20",
    "inputs=200",
    "probe.steps=5",
    "probe.batch_size=32",
    "probe.entk_batch=8",
]


def make(name, **cfg):
    x, labels = digits(200)
    return TASKS[name](x, labels, np.random.default_rng(0), ShiftsConfig(**cfg))


def test_classification_tasks_change_what_they_say():
    reset = make("label_reset")
    reset.start(0)
    first = reset.targets(1.0).clone()
    reset.start(1)
    assert 0.05 < (reset.targets(1.0) == first).float().mean() < 0.2  # independent labels: ~10% agree
    permuted = make("label_permutation")
    permuted.start(0)
    mapping = {int(a): int(b) for a, b in zip(permuted.labels, permuted.targets(1.0))}
    assert sorted(mapping.values()) == sorted(set(mapping.values())) and len(mapping) == 10  # a bijection
    pixels = make("input_permutation")
    pixels.start(0)
    assert torch.equal(pixels.targets(1.0), pixels.labels) and not torch.equal(pixels.x, pixels.base_x)
    assert torch.equal(pixels.x.sort(1).values, pixels.base_x.sort(1).values)


def test_regression_targets_grow_in_mean_or_spread():
    offset, scale = make("target_offset", offset=10.0), make("target_scale", scale=10.0)
    offset.start(3)
    scale.start(3)
    assert offset.targets(1.0).mean() == pytest.approx(30.0, abs=0.3)
    assert scale.targets(1.0).std() == pytest.approx(31.0, rel=0.15) and abs(scale.targets(1.0).mean()) < 5


def test_smooth_shift_moves_between_the_abrupt_endpoints():
    smooth = make("smooth_shift", smooth_fraction=0.5)
    smooth.start(0)
    old = smooth.targets(1.0).clone()
    smooth.start(1)
    new = smooth.targets(1.0)
    torch.testing.assert_close(smooth.targets(0.0), old)
    torch.testing.assert_close(smooth.targets(0.25), (old + new) / 2)
    torch.testing.assert_close(smooth.targets(0.75), new)


def crash_at_task(monkeypatch, task: int, args: list[str]) -> None:
    """Run ``args`` and crash it (KeyboardInterrupt) at the end of ``task``, after its checkpoint
    of the task before."""
    calls, real = [], shifts_train.evaluate

    def crashing(*evaluated):
        calls.append(1)
        if len(calls) == task:
            raise KeyboardInterrupt
        return real(*evaluated)

    monkeypatch.setattr(shifts_train, "evaluate", crashing)
    with pytest.raises(KeyboardInterrupt):
        train(config_from(args))
    monkeypatch.setattr(shifts_train, "evaluate", real)


def test_a_run_writes_the_contract_and_resumes_exactly_after_a_crash(tmp_path, monkeypatch):
    whole = train(config_from([*SMALL, f"run_dir={tmp_path / 'whole'}", "intervention=ln_l2"]))
    m = pd.read_csv(whole / "metrics.csv", dtype={"layer": str})
    assert set(
        m[["suite", "game", "agent", "intervention"]].drop_duplicates().itertuples(index=False, name=None)
    ) == {("shifts", "label_reset", "mlp", "ln_l2")}
    assert m[m.metric == "task"].value.tolist() == [1, 2, 3] and sorted(m.step.unique()) == [20, 40, 60]
    assert {
        "train_loss",
        "train_accuracy",
        "probe_loss",
        "probe_loss_fresh",
        "param_norm",
        "zombie_frac",
    } <= set(m.metric)
    assert (whole / "done").exists() and not (whole / "checkpoint").exists()

    crash_at_task(monkeypatch, 3, [*SMALL, f"run_dir={tmp_path / 'killed'}", "intervention=ln_l2"])
    resumed = train(config_from([*SMALL, f"run_dir={tmp_path / 'killed'}", "intervention=ln_l2"]))
    assert (resumed / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()


# interval hooks; a categorical regression head
@pytest.mark.parametrize("intervention", ["redo", "ln_two_hot"])
def test_regression_runs_log_fvu(tmp_path, intervention):
    d = train(
        config_from(
            [
                *SMALL,
                f"run_dir={tmp_path}",
                "task=target_offset",
                f"intervention={intervention}",
                "interventions.redo.interval=30",
                "interventions.two_hot.v_max=40",
            ]
        )
    )
    m = pd.read_csv(d / "metrics.csv")
    fvu = m[m.metric == "fvu"].value
    assert len(fvu) == 3 and (fvu >= 0).all() and "train_accuracy" not in set(m.metric)


@pytest.mark.parametrize(
    "args, message",
    [
        (["task=nope"], "unknown task 'nope'; valid: label_reset"),
        (["intervention=bogus"], "unknown intervention 'bogus'"),
        (["tasks=zero"], "invalid config or override"),
        (["intervention=two_hot"], "a categorical value head needs a regression task"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "plasticity_bench", "shifts", *SMALL, *args, f"run_dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    )
    assert not any(tmp_path.iterdir())  # nothing written


def test_target_norm_trains_in_standard_units_and_reports_fvu_in_the_original_ones(tmp_path):
    d = train(config_from([*SMALL, f"run_dir={tmp_path}", "task=target_offset", "target_norm=true"]))
    m = pd.read_csv(d / "metrics.csv").pivot_table(index="step", columns="metric", values="value")
    # standardised targets have variance 1, so the loss in those units is the fvu (up to n / (n - 1))
    assert np.allclose(m.fvu, m.train_loss, rtol=0.01) and (m.fvu < 2).all()


@pytest.mark.parametrize(
    "intervention, metric",
    [("reset", "reset_layers"), ("redo", "redo_reset_frac"), ("shrink_perturb", "shrink_perturb_applied")],
)
def test_interval_interventions_act_at_every_task_switch(tmp_path, intervention, metric):
    d = train(config_from([*SMALL, f"run_dir={tmp_path}", f"intervention={intervention}"]))
    m = pd.read_csv(d / "metrics.csv")
    assert m[m.metric == metric].step.tolist() == [20, 40]  # the switches into tasks 2 and 3
    plain = pd.read_csv(train(config_from([*SMALL, f"run_dir={tmp_path}"])) / "metrics.csv")
    acted = m[m.metric == "train_loss"].value.to_numpy()
    assert acted[0] == plain[plain.metric == "train_loss"].value.iloc[0]  # task 1: identical to none
    assert not np.array_equal(acted[1:], plain[plain.metric == "train_loss"].value.to_numpy()[1:])


def test_plasticity_injection_happens_at_the_middle_switch(tmp_path):
    cfg = config_from([*SMALL, "tasks=4", f"run_dir={tmp_path}", "intervention=plasticity_injection"])
    assert cfg.interventions["plasticity_injection"]["at"] == 41  # the first update of task 3
    m = pd.read_csv(train(cfg) / "metrics.csv")
    assert m[m.metric == "plasticity_injected"].step.tolist() == [41]
    assert (
        config_from(
            [*SMALL, "intervention=plasticity_injection", "interventions.plasticity_injection.at=7"]
        ).interventions["plasticity_injection"]["at"]
        == 7
    )


def test_a_categorical_support_must_cover_the_targets():
    with pytest.raises(
        ValueError, match=r"support \[-10, 10\] would clamp .* of task 2's targets .* target_norm=true"
    ):
        config_from([*SMALL, "task=target_offset", "intervention=two_hot"])
    # standardised: fits
    config_from([*SMALL, "task=target_offset", "intervention=two_hot", "target_norm=true"])
    config_from([*SMALL, "task=target_offset", "intervention=hl_gauss", "interventions.hl_gauss.v_max=40"])


def test_a_resume_with_another_config_is_refused(tmp_path, monkeypatch):
    crash_at_task(monkeypatch, 2, [*SMALL, "variant=mine", f"run_dir={tmp_path}"])
    saved = (run_dir := next(tmp_path.rglob("config.yaml"))).read_text()
    assert run_dir.parent.parent.name == "mine"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "plasticity_bench",
            "shifts",
            *SMALL,
            "variant=mine",
            "lr=0.01",
            f"run_dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "holds a run with another config (lr: 0.001 -> 0.01)" in result.stderr
    assert run_dir.read_text() == saved  # config.yaml is not overwritten
    other = train(config_from([*SMALL, "lr=0.01", f"run_dir={tmp_path}"]))  # without a label: its own variant
    assert other.parent.name == "none[inputs=200,lr=0.01,steps_per_task=20]"  # steps_per_task: a training key
    # threads: resumes
    resumed = train(config_from([*SMALL, "variant=mine", f"run_dir={tmp_path}", "threads=2"]))
    assert (resumed / "done").exists() and resumed == run_dir.parent


def test_the_penalties_on_the_weights_act_in_the_supervised_loop(tmp_path, monkeypatch):
    """l2 and l2init add their gradient terms after backward: the loop must call them."""
    from plasticity_bench.interventions.l2 import L2

    pulled = []
    monkeypatch.setattr(L2, "gradients", lambda self, network: pulled.append(network))
    train(config_from([*SMALL, f"run_dir={tmp_path}", "intervention=l2"]))
    assert len(pulled) == 3 * 20  # every step of the three tasks


def test_sigterm_stops_a_shifts_run_with_one_line_and_the_same_command_resumes_it(tmp_path):
    args = [*SMALL, f"run_dir={tmp_path}", "tasks=40", "steps_per_task=200"]
    cmd = [sys.executable, "-m", "plasticity_bench", "shifts", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    d = run_path(config_from(args))
    deadline = time.time() + 120
    while not (d / "checkpoint").exists() and time.time() < deadline:  # after its first task
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err
    assert "stopped by SIGTERM" in out and "Run the same command again to resume" in out
    assert not (d / "done").exists()
