import harness  # noqa: F401  (first: it blocks a slow optional import, see harness/__init__.py)
