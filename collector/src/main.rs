//! headroom-collector: parses the configuration before binding any port, then serves until
//! SIGTERM or SIGINT. Exit 64 with one line on bad usage.

use headroom_collector::{cli, run, CollectorError};
use headroom_service::{logging, signal};
use std::process::ExitCode;

/// jemalloc, not glibc's malloc: ingest frees many small decoded strings and then asks for a
/// request-sized buffer, which makes glibc consolidate its fastbins on nearly every request
/// (a third of the CPU at 5 000 agents; benches/README.md).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings: purge freed pages in a background thread, and after 1 s instead of 10 s
/// (each evaluation's snapshot is tens of MiB freed every 10 s; without this the resident set
/// carries it, and the collector's `memory_limit` reads the resident set).
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0";

fn main() -> ExitCode {
    let result = cli::parse().and_then(|settings| {
        let Some(settings) = settings else {
            return Ok(());
        };
        logging::init();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("headroom-collector")
            .build()
            .map_err(CollectorError::Runtime)?;
        rt.block_on(run(settings, signal::shutdown()))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headroom-collector: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
