"""``python -m bench --peer``: fluxo-dados against Kafka Connect + Debezium (``run.py``), with
the peer's configuration (``config.py``) and how the figures are judged (``figures.py``)."""
