"""Vendor profiles shipped with the gateway (YAML, schema `edge.devices.jt808.profile.Profile`)."""
