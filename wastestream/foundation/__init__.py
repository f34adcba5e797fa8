"""The layer every process uses: settings, config loading, event loop, InfluxQL quoting, MQTT client."""
