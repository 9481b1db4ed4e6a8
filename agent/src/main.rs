//! headroom-agent: see `headroom-agent --help`.
use std::process::ExitCode;

fn main() -> ExitCode {
    match headroom_agent::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headroom-agent: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
