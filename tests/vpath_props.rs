//! Property tests of the path normaliser (issue: hardening). For any
//! sequence of CWD/CDUP and any path argument, the resolved path never
//! leaves the root, never names a hidden component, and normalising twice
//! changes nothing.

use aftpd::core::vpath::VPath;
use proptest::prelude::*;

/// Path arguments built from the pieces traversal attempts are made of.
fn arg() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"..".to_vec()),
        Just(b".".to_vec()),
        Just(b"".to_vec()),
        Just(b"...".to_vec()),
        Just(b".hidden".to_vec()),
        Just(b"%2e%2e".to_vec()),
        Just(b"pub".to_vec()),
        Just(b"a b".to_vec()),
        Just(b"caf\xc3\xa9".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"\\..".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..6),
    ];
    (any::<bool>(), proptest::collection::vec(piece, 0..10)).prop_map(|(abs, pieces)| {
        let mut a = if abs { b"/".to_vec() } else { Vec::new() };
        a.extend(pieces.join(&b'/'));
        a
    })
}

/// A step of a session's directory changes.
#[derive(Debug, Clone)]
enum Step {
    Cwd(Vec<u8>),
    Cdup,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![arg().prop_map(Step::Cwd), Just(Step::Cdup)]
}

/// The invariants of every VPath.
fn check(p: &VPath) -> Result<(), TestCaseError> {
    let b = p.as_bytes();
    prop_assert_eq!(b[0], b'/');
    prop_assert!(p.is_root() || !b.ends_with(b"/"));
    prop_assert!(!b.contains(&0));
    for comp in b.split(|&c| c == b'/').skip(1) {
        if p.is_root() {
            break;
        }
        prop_assert!(!comp.is_empty(), "empty component in {:?}", p);
        prop_assert!(comp[0] != b'.', "dot component in {:?}", p);
    }
    // What is handed to openat2 is relative: it cannot start at `/`.
    prop_assert!(p.relative()[0] != b'/');
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn resolved_paths_stay_inside(steps in proptest::collection::vec(step(), 0..12), last in arg()) {
        let mut cwd = VPath::root();
        for s in steps {
            match s {
                Step::Cwd(a) => {
                    if let Ok(p) = VPath::resolve(&cwd, &a) {
                        check(&p)?;
                        cwd = p;
                    }
                }
                Step::Cdup => cwd = VPath::resolve(&cwd, b"..").map_err(|e| TestCaseError::fail(e.to_string()))?,
            }
            check(&cwd)?;
        }
        if let Ok(p) = VPath::resolve(&cwd, &last) {
            check(&p)?;
            // Idempotent: the normal form resolves to itself, from anywhere.
            let again = VPath::resolve(&cwd, p.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&again, &p);
            let from_root = VPath::resolve(&VPath::root(), p.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&from_root, &p);
        }
    }

    #[test]
    fn a_hidden_component_is_always_refused(prefix in arg(), name in "[.][a-z.]{1,6}") {
        prop_assume!(name != "." && name != "..");
        let mut a = prefix;
        a.push(b'/');
        a.extend_from_slice(name.as_bytes());
        prop_assert!(VPath::resolve(&VPath::root(), &a).is_err());
    }
}
