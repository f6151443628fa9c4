//! The `hookd` binary: everything lives in the library; see `hookd::cli`.

fn main() -> std::process::ExitCode {
    hookd::cli::main()
}
