"""Readers, one per source format. Each yields :class:`~medlora.data.records.QARecord` objects."""
