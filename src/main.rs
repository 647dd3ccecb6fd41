//! `job-launcher-mock`: the service as a program. Everything it does is the library's
//! (`job_launcher_mock::cli`); the allocator is chosen here.

use std::process::ExitCode;

// The registry keeps and drops many body-sized buffers; glibc's allocator spends much of
// a busy run growing and trimming its heaps, mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    job_launcher_mock::cli::main()
}
