"""plasticity-bench: plasticity loss in deep RL. DQN and PPO on Atari (EnvPool), MinAtar and
classic control, with pluggable interventions and plasticity probes; ``python -m
plasticity_bench -h`` lists the commands. Layers, each importing only those before it:
core -> nets -> agents, envs, interventions, probes -> runner, shifts -> the entry points;
analysis reads the CSVs only."""
