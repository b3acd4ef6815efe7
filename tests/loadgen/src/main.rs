//! `agw-loadgen` binary; everything lives in the library (see its crate docs).

fn main() -> std::process::ExitCode {
    agw_loadgen::run()
}
