//! `ftpd [options] ROOT`: one anonymous, read-only FTP session on standard
//! input and output. See `--help`, and `aftpd::ftpd`.

fn main() -> std::process::ExitCode {
    aftpd::ftpd::main()
}
