"""The PostgreSQL backend: one log shared by any number of replicas (see docs/postgresql.md)."""
