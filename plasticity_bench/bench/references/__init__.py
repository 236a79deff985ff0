"""Yardsticks for ``make bench``: minimal implementations of the suite's agents in plain eager
PyTorch, written for this comparison and importing nothing from plasticity-bench. Each
``steps_per_second(total_steps, measure_from, ...)`` runs one training run and returns its agent
steps/s between two steps, as ``bench.runner_stretch`` measures the suite's runner.

They are not the product: no logging, probes, interventions, checkpoints or resume. They answer
one question: what does the simplest code doing the same training cost on this machine?
"""
