//! `aftpd-supervisor [options] [ROOT]`: serves a public FTP archive to many
//! clients from one process. See `--help`, and `aftpd::supervisor`.

fn main() -> std::process::ExitCode {
    aftpd::supervisor::main()
}
