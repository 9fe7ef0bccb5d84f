//! The `cask` binary: see `cask --help`.

fn main() -> std::process::ExitCode {
    cask::cli::main()
}
