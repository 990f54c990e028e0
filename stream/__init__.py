"""The service edge: the Faust app, topics, tables, agents, metrics, settings
and the `forewarn` CLI. The only package that imports faust, aiokafka,
kafka-python or prometheus_client; it wires `schemas`, `rules` and `sinks`."""
