use std::process::ExitCode;

fn main() -> ExitCode {
    mirrordns::cli::main()
}
