//! `aftpd-status [--control PATH] [--dir DIR]`: the FTP sessions open
//! now. See `--help`, and `aftpd::status`.

fn main() -> std::process::ExitCode {
    aftpd::status::main()
}
