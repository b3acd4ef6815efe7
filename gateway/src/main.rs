//! The `agent-gateway` binary: see [`agw_gateway::run`].

fn main() -> std::process::ExitCode {
    agw_gateway::run()
}
