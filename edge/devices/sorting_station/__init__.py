"""The sorting-station kind: the Modbus register map in, deposits and bin levels out.

`station.SortingStationDriver` is its driver; `registers` the map, `pseudonym` the household HMAC.
"""
