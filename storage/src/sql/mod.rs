//! Every SQL statement of the store, one file per area. Both drivers share the text;
//! the few dialect differences (row locking, `MIN`/`LEAST`, substring search)
//! are filled in from a [`Dialect`].

mod auth;
mod events;
mod governance;
mod jobs;
mod settings;

pub(crate) use auth::*;
pub(crate) use events::*;
pub(crate) use governance::*;
pub(crate) use jobs::*;
pub(crate) use settings::*;

use std::sync::LazyLock;

/// The fragments in which SQLite and PostgreSQL differ.
struct Dialect {
    /// Two-argument minimum / maximum.
    least: &'static str,
    greatest: &'static str,
    /// `haystack, needle` position function (> 0 when found).
    instr: &'static str,
    /// Row lock taken by a claim's candidate scan.
    skip_locked: &'static str,
    /// Row lock taken before a read-then-write.
    for_update: &'static str,
    /// Cast of the shift amount (PostgreSQL shifts take `int`).
    shift_cast: &'static str,
}

const SQLITE: Dialect = Dialect {
    least: "MIN",
    greatest: "MAX",
    instr: "instr",
    // One writer connection serialises SQLite writes: no row locks needed.
    skip_locked: "",
    for_update: "",
    shift_cast: "",
};

const POSTGRES: Dialect = Dialect {
    least: "LEAST",
    greatest: "GREATEST",
    instr: "strpos",
    skip_locked: "FOR UPDATE SKIP LOCKED",
    for_update: "FOR UPDATE",
    shift_cast: "::int",
};

/// The statements of one driver.
#[derive(Debug)]
pub(crate) struct Sql {
    /// Claim on one topic for one tenant: its own jobs plus other tenants'
    /// public ones. Binds: holder, holder_key, token, expires, now, topic,
    /// tenant, namespace, publisher, worker, `,caps,`, on_behalf_of.
    pub(crate) claim_topic: String,
    /// Claim on one topic for one tenant, its own jobs only; same binds.
    pub(crate) claim_topic_own: String,
    /// Claim on one topic for every tenant (admin); same binds, $7 NULL.
    pub(crate) claim_topic_all: String,
    /// Claim on any topic; same binds, with $6 bound to NULL.
    pub(crate) claim_any: String,
    /// Fail. Binds: id, token, key, error, now, terminal(0/1), refund(0/1), max_backoff.
    pub(crate) fail: String,
    /// Read a job for update. Binds: id, tenant.
    pub(crate) get_for_update: String,
}

/// Claim order: highest priority, fewest attempts, oldest first.
const CLAIM_ORDER: &str = "ORDER BY priority DESC, attempts ASC, created_at ASC";

fn build(d: &Dialect) -> Sql {
    // What every claim asks of a candidate besides topic and tenant.
    let due = format!(
        "state IN ('open', 'leased')
                  AND ((state = 'open' AND run_at <= $5) OR (state = 'leased' AND lease_expires_at <= $5))
                  AND attempts < max_attempts
                  AND ($9 IS NULL OR tenant = $9)
                  AND (target_worker IS NULL OR target_worker = $10)
                  AND (required_capability IS NULL OR {instr}($11, ',' || required_capability || ',') > 0)
                  AND ($12 IS NULL OR on_behalf_of = $12)",
        instr = d.instr,
    );
    let skip_locked = d.skip_locked;
    // Takes the job `next` names.
    let take = "UPDATE jobs SET state = 'leased', attempts = attempts + 1,
                lease_holder = $1, lease_key = $2, lease_token = $3, lease_expires_at = $4,
                updated_at = $5, leased_at = $5
            WHERE id = (SELECT id FROM next)
            RETURNING *";
    // One scan over every live job matching `filter`, in claim order.
    let one_scan = |filter: &str| {
        format!(
            "WITH next AS (
                SELECT id FROM jobs
                WHERE {due} {filter}
                  AND (visibility = 'public'
                       OR (($7 IS NULL OR tenant = $7) AND ($8 IS NULL OR namespace = $8)))
                {CLAIM_ORDER}
                LIMIT 1 {skip_locked}
            )
            {take}"
        )
    };
    // A tenant's claim walks its own live jobs of the topic
    // (`jobs_claim_tenant`) and, when it takes public work, the topic's public
    // jobs (`jobs_claim_public`); it never reads another tenant's private
    // backlog, so that backlog costs it nothing.
    let own = format!(
        "SELECT id, priority, attempts, created_at FROM jobs
                WHERE topic = $6 AND tenant = $7 AND {due}
                  AND (visibility = 'public' OR $8 IS NULL OR namespace = $8)
                {CLAIM_ORDER}
                LIMIT 1 {skip_locked}"
    );
    let public = format!(
        "SELECT id, priority, attempts, created_at FROM jobs
                WHERE topic = $6 AND visibility = 'public' AND {due} AND tenant <> $7
                {CLAIM_ORDER}
                LIMIT 1 {skip_locked}"
    );
    let claim_topic = format!(
        "WITH own AS ({own}), pub AS ({public}),
            next AS (
                SELECT id FROM (SELECT * FROM own UNION ALL SELECT * FROM pub) AS candidates
                {CLAIM_ORDER} LIMIT 1
            )
            {take}"
    );
    let claim_topic_own = format!("WITH next AS (SELECT id FROM ({own}) AS candidates) {take}");
    let (least, greatest) = (d.least, d.greatest);
    Sql {
        claim_topic,
        claim_topic_own,
        claim_topic_all: one_scan("AND topic = $6"),
        claim_any: one_scan("AND $6 IS NULL"),
        fail: format!(
            "UPDATE jobs SET
                attempts = attempts - $7,
                state = CASE WHEN $6 = 0 AND attempts - $7 < max_attempts THEN 'open' ELSE 'dead' END,
                run_at = CASE WHEN $6 = 0 AND attempts - $7 < max_attempts
                    THEN $5 + CASE WHEN $7 = 1 THEN 0 ELSE {least}(
                        backoff_base_ms * (1 << {least}({greatest}(attempts - 1, 0), 30){cast}), $8) END
                    ELSE run_at END,
                completed_at = CASE WHEN $6 = 0 AND attempts - $7 < max_attempts THEN NULL ELSE $5 END,
                error = $4, updated_at = $5
            WHERE id = $1 AND state = 'leased' AND lease_expires_at > $5
              AND ($2 IS NOT NULL OR $3 IS NOT NULL)
      AND ($2 IS NULL OR lease_token = $2) AND ($3 IS NULL OR lease_key = $3)
            RETURNING *",
            cast = d.shift_cast,
        ),
        get_for_update: format!(
            "SELECT * FROM jobs WHERE id = $1 AND ($2 IS NULL OR tenant = $2) {}",
            d.for_update
        ),
    }
}

impl Sql {
    /// The claim statement for `p`: a tenant's claim on a topic reads only
    /// its own jobs and (when it takes public work) the public ones.
    pub(crate) fn claim_for(&self, p: &crate::JobClaimParams) -> &str {
        match (&p.topic, &p.scope) {
            (None, _) => &self.claim_any,
            (Some(_), crate::Scope::All) => &self.claim_topic_all,
            (Some(_), crate::Scope::Tenant(_)) if p.public_work => &self.claim_topic,
            (Some(_), crate::Scope::Tenant(_)) => &self.claim_topic_own,
        }
    }
}

/// SQLite statements.
pub(crate) static SQLITE_SQL: LazyLock<Sql> = LazyLock::new(|| build(&SQLITE));
/// PostgreSQL statements.
pub(crate) static POSTGRES_SQL: LazyLock<Sql> = LazyLock::new(|| build(&POSTGRES));
