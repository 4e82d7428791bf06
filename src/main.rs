//! The paywatch binary: the command line over the `paywatch` library.

fn main() -> std::process::ExitCode {
    paywatch::cli::main()
}
