use super::*;

#[test]
fn user_data_round_trips() {
    let ud = user_data(OP_MOVER, 123_456, 0xab_cdef);
    assert_eq!(parse_user_data(ud), (OP_MOVER, 123_456, 0xab_cdef));
    // Generations wrap into the bits the user_data has.
    let ud = user_data(OP_POLL, 7, 0x1ab_cdef);
    assert_eq!(parse_user_data(ud), (OP_POLL, 7, 0xab_cdef));
}

/// What an idle session costs the worker besides the kernel's socket.
#[test]
fn idle_session_is_small() {
    let conn = size_of::<Option<Conn>>();
    let io = size_of::<UringIo>();
    eprintln!("Conn slot: {conn} bytes, of which UringIo: {io}");
    assert!(conn < 2048, "{conn}");
}
