//! A seccomp filter compiler that runs at build time: `const fn`s turn an
//! allow-list ([`Policy`]) into a classic BPF program ([`Program`]), so a
//! process only copies it and loads it.
//!
//! The program checks the architecture, then finds the system call by a
//! binary search over ranges of numbers with one action each (allow,
//! refuse, or check the arguments), in a few comparisons rather than one
//! per allowed call. That matters twice at load time, which ftpd pays on
//! every connection: the kernel JIT-compiles the program, and emulates it
//! for every system call number to cache those it always allows (Linux
//! 5.11 and later); both scale with what the program runs, and a linear
//! list of ~80 calls made that emulation ~450 × ~200 steps. At run time,
//! calls the cache does not cover (those with argument checks, and the
//! refused ones) pass a handful of instructions.
//!
//! Only what the sandbox needs is here: equality, membership and masked
//! checks on arguments, little-endian 64-bit architectures.

use seccompiler::sock_filter;

/// What the program may hold, instructions.
pub const CAPACITY: usize = 512;
/// Entries a policy may hold.
pub const MAX_RULES: usize = 128;

/// The action for a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    /// Refused with this errno.
    Errno(u16),
    /// Allowed if every clause holds, else refused with the default errno.
    Check(&'static [Clause]),
}

/// One condition on an argument of a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clause {
    /// The low 32 bits of argument `arg` (an `int`), masked with `mask`,
    /// are one of `values`.
    In32 {
        arg: u8,
        mask: u32,
        values: &'static [u32],
    },
    /// Argument `arg`, all 64 bits, is `value`.
    Eq64 { arg: u8, value: u64 },
    /// The low 32 bits of argument `arg` are the calling process's id,
    /// written into the program when it is loaded ([`Program::with_pid`]).
    IsPid { arg: u8 },
}

/// A system call (by number) and its action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub nr: u32,
    pub action: Action,
}

/// Rules by number (at most one each), and what every other call gets.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    rules: [Rule; MAX_RULES],
    len: usize,
    /// The `seccomp_data.arch` the program accepts (AUDIT_ARCH_*).
    arch: u32,
    /// The errno of a refused call.
    deny: u16,
}

const NO_RULE: Rule = Rule {
    nr: 0,
    action: Action::Allow,
};

impl Policy {
    pub const fn new(arch: u32, deny: u16) -> Policy {
        Policy {
            rules: [NO_RULE; MAX_RULES],
            len: 0,
            arch,
            deny,
        }
    }

    /// Allows each of `nrs`.
    pub const fn allow(mut self, nrs: &[i64]) -> Policy {
        let mut i = 0;
        while i < nrs.len() {
            self = self.rule(nrs[i], Action::Allow);
            i += 1;
        }
        self
    }

    /// Sets the action of `nr`, which must not have one yet.
    pub const fn rule(mut self, nr: i64, action: Action) -> Policy {
        assert!(nr >= 0 && nr < u32::MAX as i64, "bad system call number");
        let nr = nr as u32;
        assert!(self.len < MAX_RULES, "too many rules: raise MAX_RULES");
        // Insertion in order of number.
        let mut at = self.len;
        while at > 0 && self.rules[at - 1].nr > nr {
            self.rules[at] = self.rules[at - 1];
            at -= 1;
        }
        assert!(
            at == 0 || self.rules[at - 1].nr != nr,
            "a system call listed twice"
        );
        self.rules[at] = Rule { nr, action };
        self.len += 1;
        self
    }

    /// The rules, in order of number.
    pub fn rules(&self) -> &[Rule] {
        &self.rules[..self.len]
    }

    /// The action for `nr`: its rule's, else the default refusal.
    #[cfg(test)]
    pub fn action(&self, nr: u32) -> Action {
        match self.rules().binary_search_by_key(&nr, |r| r.nr) {
            Ok(i) => self.rules[i].action,
            Err(_) => Action::Errno(self.deny),
        }
    }
}

/// A stretch of system call numbers `[start, next stretch's start)` with
/// one action: consecutive allowed calls make one; a refused gap one; a
/// call with checks is alone.
#[derive(Clone, Copy)]
struct Range {
    start: u32,
    action: Action,
}

/// As many stretches as rules, twice, and one: every rule may sit in a gap.
const MAX_RANGES: usize = 2 * MAX_RULES + 1;

const fn same(a: &Action, b: &Action) -> bool {
    match (a, b) {
        (Action::Allow, Action::Allow) => true,
        (Action::Errno(x), Action::Errno(y)) => *x == *y,
        // Checks are never merged: each belongs to its one call.
        _ => false,
    }
}

/// A compiled filter. `with_pid` makes the instance a process loads.
#[derive(Clone, Debug)]
pub struct Program {
    insns: [sock_filter; CAPACITY],
    len: usize,
    /// Where the process id goes ([`Clause::IsPid`]).
    pid_slots: [usize; 4],
    pid_count: usize,
}

// seccomp_data: nr at 0, arch at 4, instruction_pointer at 8, args from 16.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_low(arg: u8) -> u32 {
    assert!(arg < 6, "system calls have six arguments");
    16 + 8 * arg as u32
}
const fn off_arg_high(arg: u8) -> u32 {
    off_arg_low(arg) + 4
}

// Classic BPF opcodes (linux/bpf_common.h), as sock_filter.code has them.
const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const fn ret_value(action: &Action) -> u32 {
    match action {
        // Checks end here once every clause held (a failing one returns
        // the refusal itself).
        Action::Allow | Action::Check(_) => libc::SECCOMP_RET_ALLOW,
        Action::Errno(e) => libc::SECCOMP_RET_ERRNO | *e as u32,
    }
}

const EMPTY: sock_filter = sock_filter {
    code: 0,
    jt: 0,
    jf: 0,
    k: 0,
};

impl Program {
    /// Compiles `policy`. Meant for a `const` item: a policy that does not
    /// fit is a build error.
    pub const fn compile(policy: &Policy) -> Program {
        let mut p = Program {
            insns: [EMPTY; CAPACITY],
            len: 0,
            pid_slots: [0; 4],
            pid_count: 0,
        };
        let deny = libc::SECCOMP_RET_ERRNO | policy.deny as u32;
        // Another architecture's numbers mean other calls: refuse all.
        p.push(LD_W_ABS, 0, 0, OFF_ARCH);
        p.push(JEQ_K, 1, 0, policy.arch);
        p.push(RET_K, 0, 0, deny);
        p.push(LD_W_ABS, 0, 0, OFF_NR);
        let (ranges, n) = ranges(policy);
        p.search(&ranges, 0, n, policy.deny);
        p
    }

    /// The instructions, for a process whose id is `pid`.
    pub fn with_pid(&self, pid: u32) -> Vec<sock_filter> {
        let mut v = self.insns[..self.len].to_vec();
        for &at in &self.pid_slots[..self.pid_count] {
            v[at].k = pid;
        }
        v
    }

    #[cfg(test)]
    pub const fn len(&self) -> usize {
        self.len
    }

    const fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) {
        assert!(self.len < CAPACITY, "filter too long: raise CAPACITY");
        self.insns[self.len] = sock_filter { code, jt, jf, k };
        self.len += 1;
    }

    /// Puts an instruction in at `at`, moving those from there on.
    const fn insert(&mut self, at: usize, code: u16, k: u32) {
        assert!(self.len < CAPACITY, "filter too long: raise CAPACITY");
        let mut i = self.len;
        while i > at {
            self.insns[i] = sock_filter {
                code: self.insns[i - 1].code,
                jt: self.insns[i - 1].jt,
                jf: self.insns[i - 1].jf,
                k: self.insns[i - 1].k,
            };
            i -= 1;
        }
        self.insns[at] = sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        };
        self.len += 1;
        let mut j = 0;
        while j < self.pid_count {
            if self.pid_slots[j] >= at {
                self.pid_slots[j] += 1;
            }
            j += 1;
        }
    }

    /// Emits the search over `ranges[lo..hi]` (the accumulator holds the
    /// number): a leaf's action, or a comparison with the middle range's
    /// start, the lower half following it and the upper half after that.
    const fn search(&mut self, ranges: &[Range; MAX_RANGES], lo: usize, hi: usize, deny: u16) {
        if hi - lo == 1 {
            self.leaf(&ranges[lo].action, deny);
            return;
        }
        let mid = lo + (hi - lo) / 2;
        let at = self.len;
        // Patched once the lower half's length is known.
        self.push(JGE_K, 0, 0, ranges[mid].start);
        self.search(ranges, lo, mid, deny);
        let lower = self.len - at - 1;
        if lower <= u8::MAX as usize {
            self.insns[at].jt = lower as u8;
        } else {
            // Too far for a conditional jump (8 bits): true lands on an
            // unconditional one (32 bits), put in before the lower half,
            // which moves as a block (its jumps are relative).
            self.insert(at + 1, JA, lower as u32);
            self.insns[at].jf = 1;
        }
        self.search(ranges, mid, hi, deny);
    }

    const fn leaf(&mut self, action: &Action, deny: u16) {
        if let Action::Check(clauses) = action {
            let mut i = 0;
            while i < clauses.len() {
                self.clause(&clauses[i], deny);
                i += 1;
            }
        }
        self.push(RET_K, 0, 0, ret_value(action));
    }

    /// A clause: falls through when it holds, returns the refusal when not.
    const fn clause(&mut self, clause: &Clause, deny: u16) {
        let refuse = libc::SECCOMP_RET_ERRNO | deny as u32;
        match *clause {
            Clause::In32 { arg, mask, values } => {
                assert!(!values.is_empty() && values.len() < 200, "bad value list");
                self.push(LD_W_ABS, 0, 0, off_arg_low(arg));
                if mask != u32::MAX {
                    self.push(AND_K, 0, 0, mask);
                }
                let n = values.len();
                let mut i = 0;
                while i < n {
                    // Match: over the other values and the refusal.
                    self.push(JEQ_K, (n - i) as u8, 0, values[i]);
                    i += 1;
                }
                self.push(RET_K, 0, 0, refuse);
            }
            Clause::Eq64 { arg, value } => {
                self.push(LD_W_ABS, 0, 0, off_arg_high(arg));
                self.push(JEQ_K, 0, 2, (value >> 32) as u32);
                self.push(LD_W_ABS, 0, 0, off_arg_low(arg));
                self.push(JEQ_K, 1, 0, value as u32);
                self.push(RET_K, 0, 0, refuse);
            }
            Clause::IsPid { arg } => {
                assert!(self.pid_count < 4, "too many process id checks");
                self.push(LD_W_ABS, 0, 0, off_arg_low(arg));
                self.pid_slots[self.pid_count] = self.len;
                self.pid_count += 1;
                // The id is written in by with_pid; 0 matches no process.
                self.push(JEQ_K, 1, 0, 0);
                self.push(RET_K, 0, 0, refuse);
            }
        }
        // The accumulator held an argument: later clauses load their own,
        // and the leaf returns, so the number is not needed again.
    }
}

/// The stretches covering every number from 0 to u32::MAX, in order.
const fn ranges(policy: &Policy) -> ([Range; MAX_RANGES], usize) {
    let gap = Action::Errno(policy.deny);
    let mut out = [Range {
        start: 0,
        action: Action::Allow,
    }; MAX_RANGES];
    let mut n = 0;
    let mut next = 0u32; // the first number not yet covered
    let mut i = 0;
    while i < policy.len {
        let r = policy.rules[i];
        if r.nr > next {
            n = add(&mut out, n, next, gap);
        }
        n = add(&mut out, n, r.nr, r.action);
        next = r.nr + 1;
        i += 1;
    }
    // Past the last rule (x32's numbers, 0x40000000 and up, among them).
    n = add(&mut out, n, next, gap);
    (out, n)
}

/// Appends a stretch from `start`, merged into the last if the action is
/// the same (and no check).
const fn add(out: &mut [Range; MAX_RANGES], n: usize, start: u32, action: Action) -> usize {
    if n > 0 && same(&out[n - 1].action, &action) {
        return n;
    }
    out[n] = Range { start, action };
    n + 1
}

/// What `policy` means for a call, straight from its rules: the reference
/// the tests hold the compiled program to.
#[cfg(test)]
pub fn expected(policy: &Policy, arch: u32, nr: u32, args: [u64; 6], pid: u32) -> u32 {
    let refuse = libc::SECCOMP_RET_ERRNO | u32::from(policy.deny);
    if arch != policy.arch {
        return refuse;
    }
    let holds = |c: &Clause| match *c {
        Clause::In32 { arg, mask, values } => {
            values.contains(&(args[usize::from(arg)] as u32 & mask))
        }
        Clause::Eq64 { arg, value } => args[usize::from(arg)] == value,
        Clause::IsPid { arg } => args[usize::from(arg)] as u32 == pid,
    };
    match policy.action(nr) {
        Action::Check(clauses) if !clauses.iter().all(holds) => refuse,
        action => ret_value(&action),
    }
}

/// An interpreter of the instructions [`Program::compile`] emits, for the
/// tests: what the kernel would return for a call.
#[cfg(test)]
pub fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            OFF_NR => nr,
            OFF_ARCH => arch,
            o if (16..64).contains(&o) => {
                let a = args[((o - 16) / 8) as usize];
                if (o - 16) % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            o => panic!("load at {o}"),
        }
    };
    let (mut acc, mut pc) = (0u32, 0usize);
    loop {
        let i = &prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => acc = word(i.k),
            AND_K => acc &= i.k,
            JA => pc += i.k as usize,
            JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
            JGE_K => pc += if acc >= i.k { i.jt } else { i.jf } as usize,
            RET_K => return i.k,
            c => panic!("instruction {c:#x} at {}", pc - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARCH: u32 = 0xc000_003e;
    const EPERM: u16 = 1;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const REFUSED: u32 = libc::SECCOMP_RET_ERRNO | 1;

    const SOCKET: &[Clause] = &[
        Clause::In32 {
            arg: 0,
            mask: u32::MAX,
            values: &[2, 10],
        },
        Clause::In32 {
            arg: 1,
            mask: 0xf,
            values: &[1],
        },
    ];
    const NULL4: &[Clause] = &[Clause::Eq64 { arg: 4, value: 0 }];
    const PID: &[Clause] = &[Clause::IsPid { arg: 0 }];

    const POLICY: Policy = Policy::new(ARCH, EPERM)
        .allow(&[0, 1, 2, 3, 7, 8, 100, 437])
        .rule(41, Action::Check(SOCKET))
        .rule(44, Action::Check(NULL4))
        .rule(234, Action::Check(PID))
        .rule(435, Action::Errno(38));
    const PROGRAM: Program = Program::compile(&POLICY);

    #[test]
    fn every_number_gets_its_action() {
        let prog = PROGRAM.with_pid(4242);
        for nr in (0..1024).chain([0x4000_0000, 0x4000_0001, u32::MAX]) {
            let got = run(&prog, ARCH, nr, [0; 6]);
            let want = match POLICY.action(nr) {
                Action::Allow => ALLOW,
                Action::Errno(e) => libc::SECCOMP_RET_ERRNO | u32::from(e),
                // All-zero arguments: socket(0, ..) and tgkill(0, ..) are
                // refused, sendto(.., NULL, ..) is allowed.
                Action::Check(_) if nr == 44 => ALLOW,
                Action::Check(_) => REFUSED,
            };
            assert_eq!(got, want, "nr {nr}");
        }
        // Another architecture: everything refused.
        for nr in [0, 1, 3, 41] {
            assert_eq!(run(&prog, 0x4000_0003, nr, [0; 6]), REFUSED);
        }
    }

    #[test]
    fn arguments_are_checked() {
        let prog = PROGRAM.with_pid(4242);
        let call = |nr, args| run(&prog, ARCH, nr, args);
        assert_eq!(call(41, [2, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call(41, [10, 1 | 0o4000 | 0o2000000, 6, 0, 0, 0]), ALLOW);
        assert_eq!(call(41, [1, 1, 0, 0, 0, 0]), REFUSED);
        assert_eq!(call(41, [2, 2, 0, 0, 0, 0]), REFUSED);
        // Only the low 32 bits of an int count, as the kernel reads it.
        assert_eq!(call(41, [2 | 1 << 32, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call(44, [3, 0, 1, 0, 0, 0]), ALLOW);
        assert_eq!(call(44, [3, 0, 1, 0, 0x7fff_0000_1000, 16]), REFUSED);
        assert_eq!(call(44, [3, 0, 1, 0, 1 << 32, 16]), REFUSED);
        assert_eq!(call(234, [4242, 4242, 6, 0, 0, 0]), ALLOW);
        assert_eq!(call(234, [1, 1, 9, 0, 0, 0]), REFUSED);
        // Unpatched, the id is 0: no process.
        let raw = PROGRAM.with_pid(0);
        assert_eq!(run(&raw, ARCH, 234, [4242, 0, 0, 0, 0, 0]), REFUSED);
    }

    /// Three calls whose checks are 150 comparisons long: the lower half
    /// of the first comparison is too long for an 8-bit jump.
    const MANY: [u32; 150] = {
        let mut a = [0u32; 150];
        let mut i = 0;
        while i < 150 {
            a[i] = 3 * i as u32;
            i += 1;
        }
        a
    };
    const LONG: &[Clause] = &[Clause::In32 {
        arg: 1,
        mask: u32::MAX,
        values: &MANY,
    }];
    const LONG_POLICY: Policy = Policy::new(ARCH, EPERM)
        .rule(0, Action::Check(LONG))
        .rule(1, Action::Check(LONG))
        .rule(2, Action::Check(LONG))
        .rule(3, Action::Check(PID));
    const LONG_PROGRAM: Program = Program::compile(&LONG_POLICY);

    #[test]
    fn long_jumps_where_short_ones_cannot_reach() {
        let prog = LONG_PROGRAM.with_pid(77);
        assert!(prog.iter().any(|i| i.code == JA), "no long jump");
        for nr in 0..3 {
            for v in [0, 3, 447, 1, 448, 449, u32::MAX] {
                let want = if v % 3 == 0 && v < 450 {
                    ALLOW
                } else {
                    REFUSED
                };
                assert_eq!(run(&prog, ARCH, nr, [0, v.into(), 0, 0, 0, 0]), want);
            }
        }
        // The process id, moved with the block, was written in its place.
        assert_eq!(run(&prog, ARCH, 3, [77, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(&prog, ARCH, 3, [78, 0, 0, 0, 0, 0]), REFUSED);
        for nr in 4..600 {
            assert_eq!(run(&prog, ARCH, nr, [0; 6]), REFUSED, "nr {nr}");
        }
    }

    #[test]
    fn the_search_is_short() {
        // 8 + 4 rules make 13 stretches: 4 comparisons at most, and the
        // program is a few dozen instructions.
        let (_, n) = ranges(&POLICY);
        assert!(n <= 17, "{n} stretches");
        assert!(PROGRAM.len() < 64, "{} instructions", PROGRAM.len());
    }
}
