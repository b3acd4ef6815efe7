-- Cluster-wide singleton tasks (the sweeper's lease expiry and purge): one
-- row per task naming the replica that holds it until `expires_at` (ms).
CREATE TABLE leaders (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
