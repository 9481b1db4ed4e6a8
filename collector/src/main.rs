//! headroom-collector: parses the configuration before binding any port, then serves until
//! SIGTERM or SIGINT. Exit 64 with one line on bad usage.

use headroom_collector::{cli, run, signal, CollectorError};
use std::process::ExitCode;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let result = cli::parse().and_then(|settings| {
        let Some(settings) = settings else {
            return Ok(());
        };
        init_logging();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("headroom-collector")
            .build()
            .map_err(|e| CollectorError::Runtime(format!("cannot start the async runtime: {e}")))?;
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
