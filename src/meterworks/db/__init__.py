"""Storage: one schema (SQLAlchemy Core), two dialects (SQLite embedded, PostgreSQL)."""
