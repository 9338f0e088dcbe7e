//! `els-admin`: see the crate documentation and `els-admin --help`.

fn main() -> std::process::ExitCode {
    els_admin::cli::main()
}
