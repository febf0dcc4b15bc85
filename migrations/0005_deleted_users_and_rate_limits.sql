-- An account deleted here stays deleted: a frontend token naming it is refused rather than
-- bringing it back as a new, empty account (taskapi/auth.py, get_or_provision_user).
CREATE TABLE IF NOT EXISTS deleted_users (
    id         TEXT NOT NULL PRIMARY KEY,
    deleted_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Rate-limit windows, shared by every process of the service (taskapi/ratelimits.py, DatabaseStorage).
CREATE TABLE IF NOT EXISTS rate_limits (
    key        TEXT NOT NULL PRIMARY KEY,
    hits       INTEGER NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
