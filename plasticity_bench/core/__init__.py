"""The bottom layer, imported by every other package and importing none of them: valid ranges
of config values (``ranges``), the CSV schema of a run (``schema``), and the one interval test
(``intervals``)."""
