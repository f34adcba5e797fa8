"""`wastestream import`: scale-house history (CSV / Excel exports) into the live pipeline.

- `mapping`: the small YAML that maps the export's columns (Chinese headers work) and units.
- `rows`: reading CSV (UTF-8 or GB18030) and .xlsx (openpyxl, optional) into numbered rows.
- `convert`: one row → a contract `Weighing` or a rejection naming row, column and reason;
  stable msg_ids from the rows' content so a re-import is a duplicate downstream.
- `send`: publish to MQTT like an edge (QoS 1, Response Topic) and wait for the bridge's
  pipeline confirmations (contract.acks), re-sending what is not confirmed.
"""
