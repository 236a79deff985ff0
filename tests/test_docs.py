"""The README lists what the registries hold: agents, suites and interventions."""
import re

import agents
from conftest import ROOT
from envs import SUITES
from interventions import INTERVENTIONS


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_interventions_table_lists_every_registered_family():
    section = readme().split("## Interventions", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, re.M))
    assert rows == {"none", "ln_l2", *INTERVENTIONS}


def test_the_configuration_table_lists_every_registered_agent_and_suite():
    row = {m.group(1): set(re.findall(r"`([a-z0-9_]+)`", m.group(2)))
           for m in re.finditer(r"^\| `(env|agent)` \| ([^|]+) \|", readme(), re.M)}
    assert row["agent"] == set(agents.AGENTS) and row["env"] == set(SUITES)
