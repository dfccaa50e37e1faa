"""Lab: experiments, simulations, harnesses, tutorial systems, the origin, plots.

What teaching needs and an application does not: :mod:`~labkit.lab.basics`,
:mod:`~labkit.lab.caching`, :mod:`~labkit.lab.ratelimit`,
:mod:`~labkit.lab.sharding`, :mod:`~labkit.lab.persistence`,
:mod:`~labkit.lab.pubsub`, :mod:`~labkit.lab.queues` and :mod:`~labkit.lab.locks`
run the notebooks' experiments (they start servers and processes, flush and
reconfigure); :mod:`~labkit.lab.games` and :mod:`~labkit.lab.chat` are tutorial
systems; :mod:`~labkit.lab.proxy` injects network faults; :mod:`~labkit.lab.measure`
times things and :mod:`~labkit.lab.plots` draws what was measured. The lab imports
the library; the library never imports the lab.
"""
