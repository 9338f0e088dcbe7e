//! The admin command, built with the tests so that `CARGO_BIN_EXE_els_admin` names a binary
//! as fresh as the test code (a binary of another package is not built for this one's tests).
//! It is `admin/src/main.rs` exactly: the entry point is the library's.

fn main() -> std::process::ExitCode {
    els_admin::cli::main()
}
