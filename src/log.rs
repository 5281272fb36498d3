//! Logging: standard error or syslog (facility FTP).
