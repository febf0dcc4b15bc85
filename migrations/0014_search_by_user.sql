-- Search (q=) reads only the user's matching tasks: one GIN index holds the user (btree_gin)
-- with the trigrams of title and description (pg_trgm), where the two trigram indexes before
-- it found the matches of every user and filtered them by user after. SQLite scans the
-- user's own tasks, as before. On a large table, build the index beforehand without blocking
-- writes, with the same statement as CREATE INDEX CONCURRENTLY (outside a transaction);
-- this migration then skips it.

-- PostgreSQL only: btree_gin and pg_trgm are trusted extensions (PostgreSQL 13 and later).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX IF NOT EXISTS tasks_user_id_search_idx ON tasks
    USING gin (user_id, title gin_trgm_ops, description gin_trgm_ops);
DROP INDEX IF EXISTS tasks_title_trgm_idx;
DROP INDEX IF EXISTS tasks_description_trgm_idx;
