"""A past day of the city, replayed through the edge outboxes (day.py plans it, backlog.py stores it)."""
