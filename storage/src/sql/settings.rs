//! Statements of settings, the KV store and capability schemas.

pub(crate) const PURGE_KV: &str = "DELETE FROM kv WHERE expires_at <= $1";
pub(crate) const KV_SET: &str = "INSERT INTO kv (scope, key, value, expires_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at";
pub(crate) const KV_GET: &str =
    "SELECT value FROM kv WHERE scope = $1 AND key = $2 AND expires_at > $3";

pub(crate) const SETTING_INSERT: &str =
    "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
pub(crate) const SETTING_GET: &str = "SELECT value FROM settings WHERE name = $1";

/// Binds: capability, input_schema, output_schema, updated_at.
pub(crate) const SCHEMA_PUT: &str = "INSERT INTO capability_schemas (capability, input_schema,
    output_schema, updated_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (capability) DO UPDATE SET input_schema = excluded.input_schema,
    output_schema = excluded.output_schema, updated_at = excluded.updated_at";
pub(crate) const SCHEMA_GET: &str = "SELECT capability, input_schema, output_schema, updated_at
    FROM capability_schemas WHERE capability = $1";
pub(crate) const SCHEMA_DELETE: &str = "DELETE FROM capability_schemas WHERE capability = $1";

/// Binds: name, holder, expires_at, now. Takes the task when it is free or
/// its holder's lease has run out, renews it for its holder; changes no row
/// (another replica leads) otherwise.
pub(crate) const LEADER_TRY: &str = "INSERT INTO leaders (name, holder, expires_at)
    VALUES ($1, $2, $3)
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
    WHERE leaders.holder = excluded.holder OR leaders.expires_at <= $4";
