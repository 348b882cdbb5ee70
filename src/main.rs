//! The `coffer` binary: parse, call the library, print. See `src/cli/`.
fn main() {
    std::process::exit(coffer_cli::main());
}

#[path = "cli/mod.rs"]
mod coffer_cli;
