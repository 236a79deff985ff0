"""The neutral network layer, below agents, interventions, probes and shifts (it imports none of
them): network builders with the body/head split (``networks``), value heads with the TD loss
each implies (``values``), weight surgery that keeps an optimizer consistent (``surgery``), and
activation capture with ReDo's dormancy score (``capture``)."""
