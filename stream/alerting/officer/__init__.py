"""The officers' side of the alert service: accounts, sessions, signed push links and the pages.

accounts.py (users, roles, districts, argon2 hashes) → sessions.py (cookie sessions, CSRF, login
rate limit) → links.py (signed, expiring links in pushes) → districts.py (which district a site
is in) → evidence.py + mapsvg.py (what an alert page draws) → pages.py (aiohttp routes, Jinja2
templates in templates/, assets in static/, all served by the service: nothing from a CDN).
"""
