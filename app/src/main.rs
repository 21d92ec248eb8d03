use std::process::ExitCode;

fn main() -> ExitCode {
    bulkhead::process::main()
}
