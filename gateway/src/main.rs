//! The `agent-gateway` binary: see [`agw_gateway::run`].

/// With the `jemalloc` feature, jemalloc serves every allocation.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // Background threads purge freed pages over time (jemalloc's decay)
    // rather than only when the process allocates again, so memory of
    // connections that closed goes back to the OS while the gateway idles.
    #[cfg(feature = "jemalloc")]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("agent-gateway: jemalloc background threads not started: {e}");
    }
    agw_gateway::run()
}
