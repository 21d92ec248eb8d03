//! The `bulkhead` program, built by the test package too, so the split topology's processes
//! always run the code under test (cargo builds a package's binaries for its tests, not its
//! dependencies' binaries).

fn main() -> std::process::ExitCode {
    bulkhead::process::main()
}
