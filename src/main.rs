//! The `registry` command: a thin entry over the library (`registry::cli`).

use std::process::ExitCode;

/// sled and the decode paths allocate per record; mimalloc is markedly faster
/// than glibc malloc there (measured: see the closing notes / BENCHMARKS).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    registry::cli::main()
}
