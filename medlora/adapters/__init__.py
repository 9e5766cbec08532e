"""The adapter directory: its format in one place, used by training, evaluation, the service and push.

- :mod:`~medlora.adapters.layout`: the file names, and what makes a directory an adapter;
- :mod:`~medlora.adapters.metadata`: ``medlora.json`` read/write and the evaluations it records;
- :mod:`~medlora.adapters.card`: the ``README.md`` model card rendered from it;
- :mod:`~medlora.adapters.checks`: file validation, the base-model check and the one safe load;
- :mod:`~medlora.adapters.save`: saving the directory atomically;
- :mod:`~medlora.adapters.compat`: whether vLLM/LoRAX would load it.
"""
