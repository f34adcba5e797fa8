"""The weighbridge kind: indicator frames and plate reads in, tickets out.

`port.WeighbridgeDriver` is its driver; `workflow` the pure ticket state machine (two-pass
weighing, plate matching by time, the anti-cheat flags), `stability` the stable weight and the
remote-control step, `frames` the indicator formats, `anpr` / `anpr_http` the plate cameras.

What it speaks, and how each is tested:

- indicator continuous output (`format`): Mettler Toledo standard continuous (with or without its
  checksum byte), Yaohua XK3190-A9 tF=0, the A&D-style `ST,GS,+0012340kg` line (`st_gs`), and any
  fixed frame described in the config (`custom` + `frame`); each against frames written by hand
  from its manual's field table (tests/unit/test_weighbridge_indicator_status.py, _formats.py,
  _frames.py), the bad-input corpus (tests/corpus/weighbridge_*), the simulator on a pty
  (tests/integration/test_edge_weighbridge.py) and `wastestream edge probe --serial`
  (edge/probe/serial.py, tests/unit/test_probe_serial.py);
- plate cameras: the `AlarmInfoPlate` HTTP push (anpr_http.py; bodies from the push protocol's
  table, on loopback: tests/unit/test_weighbridge_anpr_http.py, end to end in the integration
  test) and the `PLATE <plate>` line protocol for tests and bench set-ups (anpr.py).
"""
