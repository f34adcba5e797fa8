"""The muck-truck kind: NMEA 0183 fixes and the Modbus I/O module in, truck telemetry out.

`terminal.TruckDriver` is its driver; `nmea` and `io_module` its two parsers.
"""
