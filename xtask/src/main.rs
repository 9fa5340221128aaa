//! `cargo xtask`: the project's entry points for a machine that has nothing but Rust.
//!
//! Owns: the order "set the machine up, then run cargo". The set-up itself lives in one place,
//! `ci/setup.sh` (what to check, what to install, what to say without root); this program only
//! calls it and then hands over to cargo, so `cargo xtask test` is exactly `bash ci/setup.sh test`
//! followed by `cargo test --workspace`.
//!
//! Must never: depend on a crate (it has to build in seconds before anything is installed), or
//! do work that plain `cargo` commands cannot, so people who have the prerequisites can keep
//! using cargo directly.
//!
//! ```text
//! cargo xtask serve [ARGS...]   set up for building, then run the server: buddy-blocks serve ARGS
//! cargo xtask test  [ARGS...]   set up for testing, then: cargo test --workspace ARGS
//! cargo xtask setup [build|test] only the set-up step
//! ```

use std::env;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <serve|test|setup> [ARGS...]
  serve [ARGS...]     install what building needs, then: cargo run --release --bin buddy-blocks -- serve ARGS
  test [ARGS...]      install what the tests need, then: cargo test --workspace ARGS
  setup [build|test]  only install what is missing (default: test)";

fn main() -> ExitCode {
    let mut args = env::args().skip(1);
    let Some(command) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.collect();
    let result = match command.as_str() {
        "serve" => setup("build").and_then(|()| {
            cargo(
                ["run", "--release", "--bin", "buddy-blocks", "--", "serve"],
                &rest,
            )
        }),
        "test" => setup("test").and_then(|()| cargo(["test", "--workspace"], &rest)),
        "setup" => match rest.as_slice() {
            [] => setup("test"),
            [mode] if mode == "build" || mode == "test" => setup(mode),
            _ => Err(Failure::Usage),
        },
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(Failure::Usage),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage) => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        // The step already said what went wrong (setup.sh prints its one line, cargo its errors).
        Err(Failure::Step(code)) => ExitCode::from(code),
    }
}

/// Why a command did not finish.
enum Failure {
    /// The arguments were not understood.
    Usage,
    /// A step exited with this status (1 when it was killed by a signal or could not start).
    Step(u8),
}

/// The workspace root: xtask's manifest folder's parent.
fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn setup(mode: &str) -> Result<(), Failure> {
    let script = root().join("ci").join("setup.sh");
    run(Command::new("bash").arg(script).arg(mode))
}

fn cargo<const N: usize>(fixed: [&str; N], rest: &[String]) -> Result<(), Failure> {
    // The cargo that runs us (rustup's proxy or a pinned toolchain), not whatever is on PATH.
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .current_dir(root())
        .args(fixed)
        .args(rest))
}

fn run(command: &mut Command) -> Result<(), Failure> {
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => {
            let code = status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1);
            Err(Failure::Step(code.max(1)))
        }
        Err(error) => {
            eprintln!(
                "xtask: could not start {:?}: {error}",
                command.get_program()
            );
            Err(Failure::Step(1))
        }
    }
}
