"""The benchmark of the running system: ``python -m bench`` (``make bench``).

Measures the pipeline end to end (``cadastro-produtos`` → ``produtos-persistidos``) as
``make up`` runs it, and the raw limits of each stage on the same machine with the same
records, so that the pipeline's throughput reads as a fraction of what its parts allow.
"""
