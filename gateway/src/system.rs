//! What `GET /api/system/metrics` and `/config` report: process CPU and
//! memory read from `/proc`, request figures from the metrics middleware,
//! open sessions, and the effective configuration with secrets removed.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use agw_config::Config;
use agw_protocols::governance::policy::Engine;
use agw_protocols::governance::wire::SystemMetrics;
use agw_protocols::governance::{GovMetrics, SystemInfo};
use agw_protocols::neuron::hub::Hub;

use crate::metrics::Metrics;

/// Linux reports process CPU time in clock ticks of this length.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
/// Page size of `/proc/self/statm`.
const PAGE_BYTES: f64 = 4096.0;

/// The daemon's view of itself.
#[derive(Debug)]
pub(crate) struct System {
    pub(crate) started: Instant,
    pub(crate) metrics: Metrics,
    pub(crate) config: Arc<Config>,
    pub(crate) policy: Arc<Engine>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) gov: Arc<GovMetrics>,
    /// The previous CPU sample: (wall clock, CPU seconds).
    last_cpu: Mutex<(Instant, f64)>,
}

impl System {
    pub(crate) fn new(
        metrics: Metrics,
        config: Arc<Config>,
        policy: Arc<Engine>,
        hub: Arc<Hub>,
        gov: Arc<GovMetrics>,
    ) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            metrics,
            config,
            policy,
            hub,
            gov,
            last_cpu: Mutex::new((now, cpu_seconds().unwrap_or(0.0))),
        }
    }

    /// CPU use since the previous call, percent of one core.
    fn cpu_percent(&self) -> f64 {
        let Some(cpu) = cpu_seconds() else { return 0.0 };
        let now = Instant::now();
        let mut last = self
            .last_cpu
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let wall = now.duration_since(last.0).as_secs_f64();
        let used = cpu - last.1;
        *last = (now, cpu);
        if wall <= 0.0 {
            0.0
        } else {
            (used / wall * 100.0).max(0.0)
        }
    }
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_SEC)
}

/// Resident memory as a percentage of the machine's.
fn memory_percent() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kb: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(resident * PAGE_BYTES / (total_kb * 1024.0) * 100.0)
}

impl SystemInfo for System {
    fn metrics(&self) -> SystemMetrics {
        let (requests, latency_sum) = self.metrics.totals();
        SystemMetrics {
            cpu_percent: self.cpu_percent(),
            memory_percent: memory_percent().unwrap_or(0.0),
            active_sessions: self.hub.len() as u64 + self.gov.open_streams(),
            requests_total: requests,
            avg_latency_ms: if requests == 0 {
                0.0
            } else {
                latency_sum / requests as f64 * 1000.0
            },
            gpu_percent: None,
            vram_percent: None,
            vram_used_bytes: None,
            vram_total_bytes: None,
        }
    }

    fn config(&self) -> Value {
        let mut v = serde_json::to_value(self.config.redacted()).unwrap_or(Value::Null);
        // The governance section in force, which hot reloads may have changed.
        if let (Value::Object(m), Ok(g)) = (&mut v, serde_json::to_value(&*self.policy.settings()))
        {
            m.insert("governance".into(), g);
        }
        v
    }

    fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn proc_figures_are_read() {
        let cpu = super::cpu_seconds().expect("/proc/self/stat");
        assert!(cpu >= 0.0);
        let mem = super::memory_percent().expect("/proc meminfo");
        assert!(mem > 0.0 && mem < 100.0, "{mem}");
    }
}
