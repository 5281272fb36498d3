//! Calendar arithmetic for listings, MDTM and the xferlog: UTC only, no
//! time zone database, no I/O.

pub(crate) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The last second a 14-digit timestamp can show: 9999-12-31 23:59:59.
const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// `YYYYMMDDHHMMSS` in UTC, for MDTM and the `modify` fact.
pub fn utc_timestamp(unix: i64) -> [u8; 14] {
    let t = Civil::from_unix(unix.clamp(0, MAX_TIMESTAMP));
    let mut out = [b'0'; 14];
    let fields = [
        (0, 4, t.year as u32),
        (4, 2, t.month),
        (6, 2, t.day),
        (8, 2, t.hour),
        (10, 2, t.minute),
        (12, 2, t.second),
    ];
    for (at, width, mut value) in fields {
        for digit in out[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    out
}

/// `Www Mmm dd hh:mm:ss yyyy` in UTC, as `ctime(3)` and `date` print it
/// (day of month padded with a space: `Sat Nov  1 06:00:00 2026`), for
/// the xferlog.
pub fn ctime_utc(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let t = Civil::from_unix(unix.clamp(0, MAX_TIMESTAMP));
    // 1970-01-01 was a Thursday.
    let weekday = (unix.clamp(0, MAX_TIMESTAMP).div_euclid(86_400) + 4).rem_euclid(7) as usize;
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[weekday],
        MONTHS[(t.month - 1) as usize],
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.year
    )
}

/// A UTC calendar date and time of day.
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
}

impl Civil {
    pub(crate) fn from_unix(unix: i64) -> Civil {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
        }
    }
}

/// Year, month (1-12), day (1-31) of a day count since 1970-01-01, in the
/// proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so that leap days end each 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let ts = |t| String::from_utf8(utc_timestamp(t).to_vec()).unwrap();
        assert_eq!(ts(0), "19700101000000");
        assert_eq!(ts(-86_400), "19700101000000");
        assert_eq!(ts(951_782_400), "20000229000000");
        assert_eq!(ts(951_868_799), "20000229235959");
        assert_eq!(ts(951_868_800), "20000301000000");
        assert_eq!(ts(1_700_000_000), "20231114221320");
        assert_eq!(ts(4_102_444_800), "21000101000000");
        assert_eq!(ts(i64::MAX), "99991231235959");
    }
}
