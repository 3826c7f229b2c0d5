"""Scheduling: how requests wait, batch and run.

queue.py is a version's request queue (FIFO or dynamic batching); sequence.py the
sequence batcher; ensemble.py runs ensemble pipelines; pipeline.py and load.py the
event-loop execution path; cache.py and cache_use.py the response cache; inflight.py
counts requests in flight; validate.py checks a request against its config;
stats.py keeps the statistics extension's counters.
May import memory and the contract; never models or a front end.
"""
