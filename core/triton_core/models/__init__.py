"""Models: the repository on disk, backend discovery, and each model's lifecycle.

repository.py reads the repository layout and version policies; registry.py finds
backends through entry points; defaults.py auto-completes and checks configs;
manager.py loads, reloads and unloads versions; version.py is one loaded version
(its instances and how a request reaches them); warmup.py runs model_warmup.
May import scheduling, memory and the contract; never a front end.
"""
