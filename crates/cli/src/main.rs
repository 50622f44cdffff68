//! `sotto`: the Sotto command line and terminal chat. See `sotto --help`; the exit codes are
//! listed there and defined in `exit.rs`.

mod args;
mod commands;
mod display;
mod exit;
mod key;
mod qr;
mod tui;

use std::process::ExitCode;

use clap::Parser;

/// The allocator (see the workspace manifest): faster than glibc's for the many small,
/// short-lived allocations of each message.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    // The chat owns the terminal: log lines would tear its screen.
    if !matches!(
        cli.command,
        args::Command::Profile(args::ProfileCommand::Chat { .. })
    ) {
        init_logging();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sotto: cannot start: {e}");
            return ExitCode::from(exit::Exit::Other.code());
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // The message may quote the server, which is not trusted with the terminal.
            eprintln!("sotto: {}", display::sanitize(&failure.message));
            ExitCode::from(failure.exit.code())
        }
    }
}

/// Logs to stderr, warnings and errors only unless `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
