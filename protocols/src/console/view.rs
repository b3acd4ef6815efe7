//! The console's HTML, rendered server-side: the page layout, each page's
//! body and the live fragments the browser swaps in. Every value written
//! into the HTML goes through [`esc`]; no inline script or style is used
//! (the CSP forbids both).

use std::fmt::Write as _;

use agw_storage::{ApiKey, Job, JobState, StoredEvent, Trace};
use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::session::Operator;

/// HTML-escapes text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a URL component keeps unencoded (RFC 3986 unreserved).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A path segment or query-string component.
pub(crate) fn q(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// An id-safe rendering of any text (element ids).
pub(crate) fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn ts_opt(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "–".into(), ts)
}

/// A coarse age ("<1m", "4m", "3h", "2d"): stable for a minute, so live
/// fragments do not change every second.
pub(crate) fn age(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - since).num_seconds().max(0);
    match secs {
        0..60 => "<1m".into(),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn json_block(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    format!("<pre class=\"json\">{}</pre>", esc(&text))
}

/// A hidden CSRF field.
fn csrf(op: &Operator) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&op.csrf)
    )
}

/// An action button in its own POST form, confirmed by the browser first.
fn action(op: &Operator, url: &str, label: &str, confirm: &str, extra: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\" data-confirm=\"{}\">{}{extra}<button type=\"submit\" class=\"btn\">{}</button></form>",
        esc(url),
        esc(confirm),
        csrf(op),
        esc(label)
    )
}

// === layout ===

/// The navigation entries (path, label); keys only for the admin.
fn nav(op: &Operator, active: &str) -> String {
    let mut items = vec![
        ("/console/topics", "Topics"),
        ("/console/jobs", "Jobs"),
        ("/console/neurons", "Neurons"),
    ];
    if op.principal.is_admin() {
        items.push(("/console/keys", "Keys"));
    }
    let mut s = String::from("<nav aria-label=\"Console\"><ul>");
    for (href, label) in items {
        let current = if href == active {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(s, "<li><a href=\"{href}\"{current}>{label}</a></li>");
    }
    s.push_str("</ul></nav>");
    s
}

/// A full page. `op` is `None` on the sign-in and error pages of a visitor.
pub(crate) fn page(title: &str, op: Option<&Operator>, active: &str, body: &str) -> String {
    let header = match op {
        Some(op) => format!(
            "{}<div class=\"who\"><span id=\"signed-in-as\">{}</span><form class=\"inline\" method=\"post\" action=\"/console/logout\">{}<button type=\"submit\" class=\"btn link\" id=\"sign-out\">Sign out</button></form></div>",
            nav(op, active),
            esc(&op.name()),
            csrf(op)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} · agent-gateway</title><link rel=\"stylesheet\" href=\"/console/assets/console.css\"><link rel=\"icon\" href=\"/console/assets/favicon.svg\" type=\"image/svg+xml\"><script src=\"/console/assets/console.js\" defer></script></head><body><a class=\"skip\" href=\"#main\">Skip to content</a><header><a class=\"brand\" href=\"/console/topics\">agent-gateway</a>{header}</header><main id=\"main\" tabindex=\"-1\"><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

/// The sign-in form, with an error message when a key was refused.
pub(crate) fn sign_in(message: Option<&str>) -> String {
    let msg = message.map_or_else(String::new, |m| {
        format!(
            "<p class=\"error\" id=\"sign-in-error\" role=\"alert\">{}</p>",
            esc(m)
        )
    });
    page(
        "Sign in",
        None,
        "",
        &format!(
            "{msg}<form class=\"sign-in\" method=\"post\" action=\"/console/login\"><label for=\"key\">Admin key or tenant API key</label><input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"current-password\" required autofocus><button type=\"submit\" class=\"btn primary\" id=\"sign-in\">Sign in</button></form><p class=\"hint\">The admin key sees every tenant; a tenant key sees only its tenant.</p>"
        ),
    )
}

/// An error page (status in the title).
pub(crate) fn error_page(op: Option<&Operator>, title: &str, message: &str) -> String {
    page(
        title,
        op,
        "",
        &format!(
            "<p class=\"error\" id=\"error-message\" role=\"alert\">{}</p><p><a href=\"/console/topics\">Back to topics</a></p>",
            esc(message)
        ),
    )
}

// === topics ===

/// The states the topic table shows, in column order; `failed` is open jobs
/// waiting for a retry after a failure.
pub(crate) const COLUMNS: [&str; 6] =
    ["open", "failed", "leased", "fulfilled", "dead", "cancelled"];

/// One row of the topic table.
#[derive(Debug, Default)]
pub(crate) struct TopicRow {
    pub(crate) topic: String,
    /// By [`COLUMNS`].
    pub(crate) counts: [i64; 6],
    pub(crate) oldest_open: Option<DateTime<Utc>>,
    /// Intent Bus workers that leased here recently.
    pub(crate) workers: Vec<String>,
    /// Neurons offering the topic: (neuron id, slots, leases held).
    pub(crate) neurons: Vec<(String, i64, usize)>,
    /// The inline SVG chart.
    pub(crate) chart: String,
}

/// The topic table (the live fragment of `/console/topics`).
pub(crate) fn topics_fragment(op: &Operator, rows: &[TopicRow], now: DateTime<Utc>) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\" id=\"no-topics\">No jobs yet.</p>".into();
    }
    let mut s = String::from(
        "<table class=\"grid\" id=\"topics-table\"><caption class=\"sr\">Jobs by topic and state</caption><thead><tr><th scope=\"col\">Topic</th>",
    );
    for c in COLUMNS {
        let _ = write!(s, "<th scope=\"col\" class=\"num\">{c}</th>");
    }
    s.push_str("<th scope=\"col\">Oldest open</th><th scope=\"col\">Consumers</th><th scope=\"col\">Last hour <span class=\"legend\"><span class=\"k tp\">settled/min</span> <span class=\"k depth\">depth</span></span></th><th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>");
    for r in rows {
        let id = slug(&r.topic);
        let _ = write!(
            s,
            "<tr id=\"topic-{id}\" data-topic=\"{}\"><th scope=\"row\"><a href=\"/console/jobs?topic={}\">{}</a></th>",
            esc(&r.topic),
            q(&r.topic),
            esc(&r.topic)
        );
        for (i, c) in COLUMNS.iter().enumerate() {
            let n = r.counts[i];
            let cell = if n == 0 {
                "<span class=\"zero\">0</span>".to_owned()
            } else {
                format!(
                    "<a href=\"/console/jobs?topic={}&amp;state={c}\">{n}</a>",
                    q(&r.topic)
                )
            };
            let _ = write!(s, "<td class=\"num\" data-state=\"{c}\">{cell}</td>");
        }
        let oldest = r
            .oldest_open
            .map_or_else(|| "–".into(), |t| esc(&age(t, now)));
        let _ = write!(s, "<td class=\"age\">{oldest}</td><td class=\"consumers\">");
        for w in &r.workers {
            let _ = write!(
                s,
                "<span class=\"tag worker\" title=\"Intent Bus worker\">{}</span> ",
                esc(w)
            );
        }
        for (n, slots, held) in &r.neurons {
            let _ = write!(
                s,
                "<span class=\"tag neuron\" title=\"neuron: leases held / slots\">{} {held}/{slots}</span> ",
                esc(n)
            );
        }
        if r.workers.is_empty() && r.neurons.is_empty() {
            s.push_str("<span class=\"zero\">none</span>");
        }
        let settled = r.counts[3] + r.counts[4] + r.counts[5];
        let purge = if settled > 0 {
            action(
                op,
                "/console/topics/purge",
                "Purge settled",
                &format!("Delete the {settled} settled jobs of {}?", r.topic),
                &format!(
                    "<input type=\"hidden\" name=\"topic\" value=\"{}\">",
                    esc(&r.topic)
                ),
            )
        } else {
            String::new()
        };
        let _ = write!(s, "</td><td>{}</td><td>{purge}</td></tr>", r.chart);
    }
    s.push_str("</tbody></table>");
    s
}

// === jobs ===

/// A job's displayed state: `failed` for an open job waiting for its retry.
pub(crate) fn state_label(j: &Job) -> &'static str {
    if j.state == JobState::Open && j.error.is_some() {
        "failed"
    } else {
        j.state.as_str()
    }
}

fn holder(j: &Job) -> String {
    match (&j.lease, &j.last_holder) {
        (Some(l), _) => esc(&l.holder),
        (None, Some(h)) => format!("<span class=\"dim\">{}</span>", esc(h)),
        (None, None) => "–".into(),
    }
}

/// The job table (the live fragment of `/console/jobs`).
pub(crate) fn jobs_fragment(op: &Operator, jobs: &[Job], next: Option<&str>) -> String {
    if jobs.is_empty() {
        return "<p class=\"empty\" id=\"no-jobs\">No jobs match.</p>".into();
    }
    let admin = op.principal.is_admin();
    let mut s = String::from(
        "<table class=\"grid\" id=\"jobs-table\"><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">Topic</th><th scope=\"col\">State</th><th scope=\"col\">Protocol</th>",
    );
    if admin {
        s.push_str("<th scope=\"col\">Tenant</th>");
    }
    s.push_str("<th scope=\"col\" class=\"num\">Attempts</th><th scope=\"col\">Created</th><th scope=\"col\">Holder</th><th scope=\"col\">Error</th></tr></thead><tbody>");
    for j in jobs {
        let state = state_label(j);
        let _ = write!(
            s,
            "<tr id=\"job-{}\" data-state=\"{state}\"><td><a class=\"mono\" href=\"/console/jobs/{}\">{}</a></td><td>{}</td><td><span class=\"state s-{state}\">{state}</span></td><td>{}</td>",
            esc(&j.id),
            q(&j.id),
            esc(&j.id),
            esc(&j.topic),
            j.protocol.as_str()
        );
        if admin {
            let _ = write!(s, "<td>{}</td>", esc(&j.tenant));
        }
        let err = j.error.as_deref().unwrap_or("");
        let short: String = err.chars().take(80).collect();
        let _ = write!(
            s,
            "<td class=\"num\">{}/{}</td><td>{}</td><td>{}</td><td class=\"err\" title=\"{}\">{}</td></tr>",
            j.attempts,
            j.max_attempts,
            ts(j.created_at),
            holder(j),
            esc(err),
            esc(&short)
        );
    }
    s.push_str("</tbody></table>");
    if let Some(next) = next {
        let _ = write!(
            s,
            "<p class=\"pager\"><a id=\"older\" href=\"{}\">Older jobs →</a></p>",
            esc(next)
        );
    }
    s
}

/// The filter form above the job table.
pub(crate) fn jobs_filter(topic: Option<&str>, state: Option<&str>) -> String {
    let mut s = format!(
        "<form class=\"filters\" method=\"get\" action=\"/console/jobs\" role=\"search\"><label for=\"f-topic\">Topic</label><input id=\"f-topic\" name=\"topic\" value=\"{}\" placeholder=\"any\"><label for=\"f-state\">State</label><select id=\"f-state\" name=\"state\"><option value=\"\">any</option>",
        esc(topic.unwrap_or(""))
    );
    for c in COLUMNS {
        let sel = if state == Some(c) { " selected" } else { "" };
        let _ = write!(s, "<option{sel}>{c}</option>");
    }
    s.push_str("</select><button type=\"submit\" class=\"btn\">Filter</button></form>");
    s
}

/// What the job page shows of its event chain.
pub(crate) struct ChainView {
    pub(crate) events: Vec<StoredEvent>,
    /// `Ok(n)`: n events verified; `Err(what broke)`.
    pub(crate) verdict: Result<usize, String>,
}

fn attr<'a>(e: &'a agw_events::ExecutionEvent, k: &str) -> Option<&'a Value> {
    e.attributes.as_ref().and_then(|a| a.get(k))
}

fn value_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => esc(s),
        Some(v) => esc(&v.to_string()),
        None => "–".into(),
    }
}

/// The job page's body (its live fragment): facts, payload, result,
/// progress, attempts (from its events), the event chain and its verdict, actions.
pub(crate) fn job_fragment(
    op: &Operator,
    j: &Job,
    input: &Value,
    result: Option<&Value>,
    chain: &ChainView,
) -> String {
    let state = state_label(j);
    let mut s = String::new();
    let _ = write!(
        s,
        "<div class=\"facts\"><dl><dt>State</dt><dd><span id=\"job-state\" class=\"state s-{state}\">{state}</span></dd><dt>Topic</dt><dd><a href=\"/console/jobs?topic={}\">{}</a></dd><dt>Protocol</dt><dd id=\"job-protocol\">{}</dd><dt>Tenant</dt><dd>{}</dd><dt>Namespace</dt><dd>{}</dd><dt>Attempts</dt><dd id=\"job-attempts\">{} of {}</dd><dt>Priority</dt><dd>{}</dd><dt>Created</dt><dd>{}</dd><dt>Runs at</dt><dd>{}</dd><dt>Updated</dt><dd>{}</dd><dt>Completed</dt><dd>{}</dd></dl><dl>",
        q(&j.topic),
        esc(&j.topic),
        j.protocol.as_str(),
        esc(&j.tenant),
        esc(&j.namespace),
        j.attempts,
        j.max_attempts,
        j.priority,
        ts(j.created_at),
        ts(j.run_at),
        ts(j.updated_at),
        ts_opt(j.completed_at),
    );
    match &j.lease {
        Some(l) => {
            let _ = write!(
                s,
                "<dt>Lease holder</dt><dd id=\"lease-holder\">{}</dd><dt>Lease expires</dt><dd id=\"lease-expires\">{}</dd>",
                esc(&l.holder),
                ts(l.expires_at)
            );
        }
        None => {
            let _ = write!(
                s,
                "<dt>Lease holder</dt><dd id=\"lease-holder\">none{}</dd>",
                j.last_holder
                    .as_deref()
                    .map_or_else(String::new, |h| format!(" (last: {})", esc(h)))
            );
        }
    }
    if let Some(e) = &j.error {
        let _ = write!(
            s,
            "<dt>Last error</dt><dd class=\"err\" id=\"job-error\">{}</dd>",
            esc(e)
        );
    }
    if let Some(trace) = j
        .metadata
        .as_ref()
        .and_then(|m| m.get("trace_id"))
        .and_then(Value::as_str)
        .filter(|_| j.protocol == agw_storage::Protocol::Governance)
    {
        let _ = write!(
            s,
            "<dt>Governance trace</dt><dd><a id=\"trace-link\" href=\"/console/traces/{}\">{}</a></dd>",
            q(trace),
            esc(trace)
        );
    }
    s.push_str("</dl></div><div class=\"actions\">");
    if matches!(state, "dead" | "failed") {
        s.push_str(&action(
            op,
            &format!("/console/jobs/{}/retry", q(&j.id)),
            "Retry",
            "Make this job claimable again now?",
            "",
        ));
    }
    if matches!(j.state, JobState::Open | JobState::Leased) {
        s.push_str(&action(
            op,
            &format!("/console/jobs/{}/cancel", q(&j.id)),
            "Cancel",
            "Cancel this job? A worker or neuron holding it is told to stop.",
            "",
        ));
    }
    s.push_str("</div><h2>Payload</h2>");
    s.push_str(&json_block(input));
    s.push_str("<h2>Result</h2>");
    match result {
        Some(r) => s.push_str(&json_block(r)),
        None => s.push_str("<p class=\"dim\">none yet</p>"),
    }
    if let Some(p) = &j.progress {
        s.push_str("<h2>Progress</h2><div id=\"job-progress\">");
        s.push_str(&json_block(p));
        s.push_str("</div>");
    }
    s.push_str("<h2>Execution events</h2>");
    match &chain.verdict {
        Ok(0) => s.push_str("<p class=\"dim\" id=\"chain-verdict\">no events yet</p>"),
        Ok(n) => {
            let _ = write!(
                s,
                "<p class=\"ok\" id=\"chain-verdict\">verified: {n} event{} — every signature and chain link checks out</p>",
                if *n == 1 { "" } else { "s" }
            );
        }
        Err(e) => {
            let _ = write!(
                s,
                "<p class=\"error\" id=\"chain-verdict\">broken: {}</p>",
                esc(e)
            );
        }
    }
    if !chain.events.is_empty() {
        s.push_str("<table class=\"grid\" id=\"events-table\"><thead><tr><th scope=\"col\" class=\"num\">#</th><th scope=\"col\">Completed</th><th scope=\"col\">Action</th><th scope=\"col\">Status</th><th scope=\"col\">Outcome</th><th scope=\"col\" class=\"num\">Attempt</th><th scope=\"col\">Worker</th><th scope=\"col\">Error</th><th scope=\"col\">Signed by</th></tr></thead><tbody>");
        for se in &chain.events {
            let e = &se.event;
            let err = e
                .error
                .as_ref()
                .and_then(|v| v.get("message"))
                .map_or_else(String::new, |m| value_text(Some(m)));
            let _ = write!(
                s,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"err\">{err}</td><td class=\"mono\">{}</td></tr>",
                e.chain_position,
                esc(&e.completed_at),
                esc(&e.action),
                e.status.as_str(),
                value_text(attr(e, "outcome")),
                value_text(attr(e, "attempt")),
                value_text(attr(e, "worker")),
                e.signature
                    .as_ref()
                    .map_or_else(|| "unsigned".into(), |sig| esc(&sig.key_id)),
            );
        }
        s.push_str("</tbody></table>");
    }
    s
}

// === neurons ===

/// One connected neuron, as the neurons page lists it.
pub(crate) struct NeuronRow {
    pub(crate) tenant: String,
    pub(crate) neuron_id: String,
    pub(crate) connected_at: DateTime<Utc>,
    pub(crate) last_seen: DateTime<Utc>,
    /// (type, concurrency).
    pub(crate) capabilities: Vec<(String, i64)>,
    /// (job id, capability type).
    pub(crate) leases: Vec<(String, String)>,
}

pub(crate) fn neurons_body(op: &Operator, rows: &[NeuronRow], now: DateTime<Utc>) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\" id=\"no-neurons\">No neuron is connected to this replica.</p>"
            .into();
    }
    let admin = op.principal.is_admin();
    let mut s = String::from(
        "<table class=\"grid\" id=\"neurons-table\"><thead><tr><th scope=\"col\">Neuron</th>",
    );
    if admin {
        s.push_str("<th scope=\"col\">Tenant</th>");
    }
    s.push_str("<th scope=\"col\">Connected</th><th scope=\"col\">Last heartbeat</th><th scope=\"col\">Capabilities (slots)</th><th scope=\"col\">Leases held</th></tr></thead><tbody>");
    for r in rows {
        let _ = write!(
            s,
            "<tr id=\"neuron-{}\"><th scope=\"row\">{}</th>",
            slug(&r.neuron_id),
            esc(&r.neuron_id)
        );
        if admin {
            let _ = write!(s, "<td>{}</td>", esc(&r.tenant));
        }
        let caps: Vec<String> = r
            .capabilities
            .iter()
            .map(|(k, c)| format!("<span class=\"tag\">{} ×{c}</span>", esc(k)))
            .collect();
        let leases: Vec<String> = r
            .leases
            .iter()
            .map(|(j, k)| format!("<a class=\"mono\" href=\"/console/jobs/{}\">{}</a> <span class=\"dim\">{}</span>", q(j), esc(j), esc(k)))
            .collect();
        let _ = write!(
            s,
            "<td>{}</td><td>{} ago</td><td>{}</td><td>{}</td></tr>",
            ts(r.connected_at),
            esc(&age(r.last_seen, now)),
            caps.join(" "),
            if leases.is_empty() {
                "none".into()
            } else {
                leases.join("<br>")
            }
        );
    }
    s.push_str("</tbody></table>");
    s
}

// === traces ===

pub(crate) fn trace_body(t: &Trace, violations: &Value) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<div class=\"facts\"><dl><dt>Decision</dt><dd><span id=\"trace-decision\" class=\"state d-{d}\">{d}</span></dd><dt>Reason</dt><dd>{}</dd><dt>Risk score</dt><dd>{:.2}</dd><dt>Policy</dt><dd>{}</dd><dt>Rules matched</dt><dd id=\"trace-rules\">{}</dd><dt>Mode</dt><dd id=\"trace-mode\">{}</dd><dt>Budget</dt><dd id=\"trace-budget\">{}</dd></dl><dl><dt>Status</dt><dd id=\"trace-status\">{}</dd><dt>Run</dt><dd>{}</dd><dt>Tenant</dt><dd>{}</dd><dt>Job</dt><dd>{}</dd><dt>Topic</dt><dd>{}</dd><dt>Worker</dt><dd>{}</dd><dt>Latency</dt><dd>{:.1} ms</dd><dt>Decided</dt><dd>{}</dd><dt>Settled</dt><dd>{}</dd></dl></div><h2>Violations</h2>{}",
        esc(&t.reason),
        t.risk_score,
        esc(&t.policy),
        if t.matched_rules.is_empty() {
            "none".into()
        } else {
            esc(&t.matched_rules.join(", "))
        },
        esc(&t.mode),
        t.budget,
        esc(&t.status),
        t.kind.as_str(),
        esc(&t.tenant),
        t.job_id.as_deref().map_or_else(
            || "none (blocked)".into(),
            |j| format!(
                "<a id=\"trace-job\" class=\"mono\" href=\"/console/jobs/{}\">{}</a>",
                q(j),
                esc(j)
            )
        ),
        esc(t.topic.as_deref().unwrap_or("–")),
        esc(t.worker.as_deref().unwrap_or("–")),
        t.latency_ms,
        ts(t.created_at),
        ts_opt(t.settled_at),
        json_block(violations),
        d = t.decision.as_str(),
    );
    s
}

// === keys ===

pub(crate) fn keys_body(op: &Operator, keys: &[ApiKey], created: Option<(&str, &str)>) -> String {
    let mut s = String::new();
    if let Some((owner, raw)) = created {
        let _ = write!(
            s,
            "<div class=\"notice\" role=\"status\"><p>New key for <strong>{}</strong> — copy it now, it is not shown again:</p><code id=\"new-key\">{}</code></div>",
            esc(owner),
            esc(raw)
        );
    }
    let _ = write!(
        s,
        "<form class=\"filters\" method=\"post\" action=\"/console/keys\" data-confirm=\"Create a new API key?\">{}<label for=\"owner\">Tenant (owner)</label><input id=\"owner\" name=\"owner\" required maxlength=\"128\"><button type=\"submit\" class=\"btn primary\" id=\"create-key\">Create key</button></form>",
        csrf(op)
    );
    s.push_str("<table class=\"grid\" id=\"keys-table\"><thead><tr><th scope=\"col\">Key id</th><th scope=\"col\">Tenant</th><th scope=\"col\">Role</th><th scope=\"col\">Created</th><th scope=\"col\">Last used</th><th scope=\"col\">Revoked</th><th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>");
    for k in keys {
        let revoke = if k.revoked_at.is_none() {
            action(
                op,
                &format!("/console/keys/{}/revoke", q(&k.id)),
                "Revoke",
                &format!(
                    "Revoke key {} of {}? Clients using it are refused within a second.",
                    k.id, k.owner
                ),
                "",
            )
        } else {
            String::new()
        };
        let _ = write!(
            s,
            "<tr id=\"key-{}\"><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{revoke}</td></tr>",
            slug(&k.id),
            esc(&k.id),
            esc(&k.owner),
            k.role.as_str(),
            ts(k.created_at),
            ts_opt(k.last_used_at),
            ts_opt(k.revoked_at),
        );
    }
    s.push_str("</tbody></table>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(q("a/b c"), "a%2Fb%20c");
        assert_eq!(slug("a/b.c"), "a-b-c");
    }

    #[test]
    fn ages_are_coarse() {
        let t = Utc::now();
        assert_eq!(age(t, t), "<1m");
        assert_eq!(age(t - chrono::Duration::seconds(61), t), "1m");
        assert_eq!(age(t - chrono::Duration::hours(3), t), "3h");
        assert_eq!(age(t + chrono::Duration::hours(3), t), "<1m");
    }
}
