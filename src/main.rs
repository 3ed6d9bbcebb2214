//! The `tether` binary: everything lives in `tether_server::cli`.

/// mimalloc rather than glibc's malloc: a request allocates and frees many small buffers
/// across threads, where glibc spent about a sixth of the CPU of a GET (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tether_server::cli::main()
}
