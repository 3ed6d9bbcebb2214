//! The `tether` binary: everything lives in `tether_server::cli`.

fn main() -> std::process::ExitCode {
    tether_server::cli::main()
}
