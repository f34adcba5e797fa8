"""The weighbridge kind: indicator frames (Toledo, XK3190) and plate-camera lines in, tickets out.

`port.WeighbridgeDriver` is its driver; `workflow` the pure ticket state machine.
"""
