//! The `porxy` binary: everything is in the library (`lib.rs`).

fn main() -> std::process::ExitCode {
    porxy_cli::main()
}
