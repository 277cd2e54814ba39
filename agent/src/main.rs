//! The `ra-agent` binary: parse arguments, set up logging, run one command, exit with the
//! status of its outcome.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use ra_agent::cli::{self, Command};
use ra_agent::error::{exit, report};
use ra_agent::{commands, logger};

mod signals {
    use ra_agent::daemon::clock::{Event, SystemClock};
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

    /// Returns a clock whose waits end early on SIGHUP (reload) and SIGTERM or SIGINT
    /// (stop). Without the handlers the process would still stop, just not cleanly.
    pub fn clock() -> SystemClock {
        let (sender, receiver) = std::sync::mpsc::channel();
        match signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM]) {
            Ok(mut signals) => {
                std::thread::spawn(move || {
                    for signal in signals.forever() {
                        let event = if signal == SIGHUP {
                            Event::Reload
                        } else {
                            Event::Stop
                        };
                        if sender.send(event).is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => log::warn!("cannot install signal handlers: {e}"),
        }
        SystemClock::new(receiver)
    }
}

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args_os().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("ra-agent: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    logger::init(options.debug);
    let result = match options.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            Ok(())
        }
        Command::Version => {
            println!("ra-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::CredentialProcess => commands::credential_process(&options),
        Command::Update => commands::update(&options, &signals::clock()),
        Command::Serve => commands::serve(&options, &signals::clock()),
        Command::Status => commands::status(&options),
        Command::SignString => commands::sign_string(&options),
        Command::ReadCertificateData => commands::read_certificate_data(&options),
    };
    match result {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(e) => {
            log::error!("{}", report(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
