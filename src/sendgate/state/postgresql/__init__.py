"""The PostgreSQL backend: `state: postgresql://user@host:port/db`, for many processes on one database."""

from sendgate.state.postgresql.store import PostgresStore

__all__ = ["PostgresStore"]
