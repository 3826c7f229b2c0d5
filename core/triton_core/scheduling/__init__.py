"""Scheduling: how requests wait, batch and run.

scheduler.py says what a version's scheduler is and picks one: queue.py's FIFO queue
or dynamic batcher, or sequence.py's sequence batcher. servable.py says what the
server asks of a ready version (models' LoadedVersion, ensemble.py's EnsembleVersion);
ensemble.py runs ensemble pipelines; driver.py says how an instance's batches run
(thread_driver.py, loop_driver.py on engine_loop.py's loop) and completion.py how
each request ends; cache.py and cache_use.py the response cache; inflight.py
counts requests in flight; validate.py checks a request against its config;
stats.py keeps the statistics extension's counters; clock.py is the schedulers' time
(injectable for tests); policy.py the drivers' tuning (DriverPolicy).
May import memory and the contract; never models or a front end.
"""
