"""JT/T 808 (2013 and 2019) muck-truck terminals: the platform side, as an edge device kind.

`codec` frames and unframes packets, `messages` decodes and encodes the bodies, `profile` reads a
vendor's status bits for load, cover and bed, `gateway` is the shared asyncio TCP server and
`driver` the kind's driver (one per terminal). See README.md in this folder.
"""
