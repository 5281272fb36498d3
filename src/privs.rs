//! Privileges: chroot, setgroups/setgid/setuid, no_new_privs.
