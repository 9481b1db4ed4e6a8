//! headroom-collector: parses the configuration before binding any port, then serves until
//! SIGTERM or SIGINT. Exit 64 with one line on bad usage.

use headroom_collector::{cli, run, CollectorError};
use headroom_service::{logging, signal};
use std::process::ExitCode;

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
