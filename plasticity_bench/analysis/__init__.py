"""From a folder of runs to IQM figures and tables, using only the logged CSVs.

load (read and validate every run) -> scores (normalise, final scores, a common step grid)
-> stats (rliable: IQM and friends with stratified bootstrap CIs) -> plots (seaborn; no
statistics computed there). ``python -m plasticity_bench figures RUNS OUT`` (``make figures``) runs it all.
"""
