//! Maintenance windows: a cron expression says when a window opens (in its time zone, so
//! "22:00 in Oslo" stays 22:00 across daylight saving), a duration how long it stays open.
//! A time is inside when some opening `o` has `o ≤ t < o + duration`; openings may overlap.

use aloft_api::management::MaintenanceWindow;
use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Shortest window.
pub const MIN_DURATION_SECONDS: u64 = 60;
/// Longest window (7 days).
pub const MAX_DURATION_SECONDS: u64 = 7 * 86_400;
/// Longest cron expression.
const MAX_CRON: usize = 256;

/// A checked window.
#[derive(Debug, Clone)]
pub struct Window {
    cron: Cron,
    zone: Tz,
    duration_us: i64,
}

/// Where a time stands against a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Openness {
    /// Inside; it closes at this time (UNIX µs) unless a later opening extends it.
    Open {
        /// UNIX µs.
        closes: i64,
    },
    /// Outside; it opens next at this time (UNIX µs), `None` when it never opens again.
    Closed {
        /// UNIX µs.
        opens: Option<i64>,
    },
}

impl Window {
    /// Checks a window as given: five cron fields, a known IANA time zone, a duration from
    /// [`MIN_DURATION_SECONDS`] to [`MAX_DURATION_SECONDS`], and a date that exists (so
    /// "30 February" is refused; without a year field a pattern matches never or forever).
    pub fn parse(w: &MaintenanceWindow) -> Result<Self, String> {
        if w.cron.len() > MAX_CRON {
            return Err(format!(
                "window.cron must have at most {MAX_CRON} characters"
            ));
        }
        if w.cron.split_whitespace().count() != 5 && !w.cron.trim_start().starts_with('@') {
            return Err(format!(
                "window.cron {:?} must have five fields: minute, hour, day of month, month, day of week",
                w.cron
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(&w.cron)
            .map_err(|e| format!("window.cron {:?} is not a cron expression: {e}", w.cron))?;
        let zone_name = w.time_zone.as_deref().unwrap_or("UTC");
        let zone: Tz = zone_name.parse().map_err(|_| {
            format!(
                "window.time_zone {zone_name:?} is not an IANA time zone such as \"Europe/Oslo\""
            )
        })?;
        if !(MIN_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(&w.duration_seconds) {
            return Err(format!(
                "window.duration_seconds must be from {MIN_DURATION_SECONDS} to {MAX_DURATION_SECONDS}"
            ));
        }
        let window = Self {
            cron,
            zone,
            duration_us: i64::try_from(w.duration_seconds).unwrap_or(i64::MAX / 2) * 1_000_000,
        };
        if window.next_opening(0, false).is_none() {
            return Err(format!("window.cron {:?} never matches", w.cron));
        }
        Ok(window)
    }

    /// Where `now` (UNIX µs) stands.
    pub fn at(&self, now: i64) -> Openness {
        // The first opening after `now - duration`: if it is not after `now`, `now` is inside.
        match self.next_opening(now.saturating_sub(self.duration_us), false) {
            Some(o) if o <= now => {
                let last = self.previous_opening(now).unwrap_or(o).max(o);
                Openness::Open {
                    closes: last.saturating_add(self.duration_us),
                }
            }
            opens => Openness::Closed { opens },
        }
    }

    /// The earliest time at or after `t` inside the window, `None` when it never opens again.
    pub fn earliest_inside(&self, t: i64) -> Option<i64> {
        match self.at(t) {
            Openness::Open { .. } => Some(t),
            Openness::Closed { opens } => opens,
        }
    }

    fn local(&self, t: i64) -> Option<DateTime<Tz>> {
        DateTime::<Utc>::from_timestamp_micros(t).map(|u| u.with_timezone(&self.zone))
    }

    fn next_opening(&self, after: i64, inclusive: bool) -> Option<i64> {
        let from = self.local(after)?;
        let next = self.cron.find_next_occurrence(&from, inclusive).ok()?;
        Some(next.timestamp_micros())
    }

    fn previous_opening(&self, t: i64) -> Option<i64> {
        let from = self.local(t)?;
        let prev = self.cron.find_previous_occurrence(&from, true).ok()?;
        Some(prev.timestamp_micros())
    }
}

/// UNIX µs of a wall-clock time in a zone (for tests and examples).
pub fn at_local(zone: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Option<i64> {
    zone.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .map(|t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(cron: &str, duration_seconds: u64, zone: Option<&str>) -> MaintenanceWindow {
        MaintenanceWindow {
            cron: cron.into(),
            duration_seconds,
            time_zone: zone.map(Into::into),
        }
    }

    const MIN: i64 = 60_000_000;

    #[test]
    fn bad_windows_are_refused_with_the_reason() {
        for (w, why) in [
            (window("0 22 * *", 3600, None), "five fields"),
            (window("0 0 22 * * *", 3600, None), "five fields"),
            (window("61 22 * * *", 3600, None), "not a cron expression"),
            (window("0 22 * * XYZ", 3600, None), "not a cron expression"),
            (window("0 0 30 2 *", 3600, None), "never matches"),
            (window("0 22 * * *", 59, None), "duration_seconds"),
            (
                window("0 22 * * *", 7 * 86_400 + 1, None),
                "duration_seconds",
            ),
            (window("0 22 * * *", 3600, Some("Mars/Olympus")), "IANA"),
            (window(&"0 22 * * * ".repeat(60), 3600, None), "at most"),
        ] {
            let e = Window::parse(&w).unwrap_err();
            assert!(e.contains(why), "{w:?}: {e}");
        }
    }

    #[test]
    fn times_inside_and_outside_at_the_edges() {
        let oslo: Tz = "Europe/Oslo".parse().unwrap();
        let utc = Tz::UTC;
        let t = |z: Tz, d: u32, h: u32, mi: u32| at_local(z, 2026, 12, d, h, mi).unwrap();
        // 22:00 to 23:00 on weekdays, Oslo time; 2 December 2026 is a Wednesday.
        let weekdays = window("0 22 * * MON-FRI", 3600, Some("Europe/Oslo"));
        // Every 10 minutes for 2 minutes, UTC.
        let often = window("*/10 * * * *", 120, None);
        // Openings that overlap: each hour, for two hours: always open.
        let overlapping = window("0 * * * *", 7200, None);
        for (w, at, want) in [
            (
                &weekdays,
                t(oslo, 2, 21, 59),
                Openness::Closed {
                    opens: Some(t(oslo, 2, 22, 0)),
                },
            ),
            (
                &weekdays,
                t(oslo, 2, 22, 0),
                Openness::Open {
                    closes: t(oslo, 2, 23, 0),
                },
            ),
            (
                &weekdays,
                t(oslo, 2, 23, 0) - 1,
                Openness::Open {
                    closes: t(oslo, 2, 23, 0),
                },
            ),
            (
                &weekdays,
                t(oslo, 2, 23, 0),
                Openness::Closed {
                    opens: Some(t(oslo, 3, 22, 0)),
                },
            ),
            // Friday 4 December after the window: next Monday the 7th.
            (
                &weekdays,
                t(oslo, 4, 23, 30),
                Openness::Closed {
                    opens: Some(t(oslo, 7, 22, 0)),
                },
            ),
            (
                &often,
                t(utc, 2, 12, 1),
                Openness::Open {
                    closes: t(utc, 2, 12, 2),
                },
            ),
            (
                &often,
                t(utc, 2, 12, 2),
                Openness::Closed {
                    opens: Some(t(utc, 2, 12, 10)),
                },
            ),
            (
                &overlapping,
                t(utc, 2, 12, 30),
                Openness::Open {
                    closes: t(utc, 2, 14, 0),
                },
            ),
        ] {
            let parsed = Window::parse(w).unwrap();
            assert_eq!(parsed.at(at), want, "{w:?} at {at}");
        }
        let parsed = Window::parse(&often).unwrap();
        assert_eq!(
            parsed.earliest_inside(t(utc, 2, 12, 5)),
            Some(t(utc, 2, 12, 10))
        );
        assert_eq!(
            parsed.earliest_inside(t(utc, 2, 12, 1)),
            Some(t(utc, 2, 12, 1))
        );
        assert_eq!(t(utc, 2, 12, 2) - t(utc, 2, 12, 0), 2 * MIN);
    }

    #[test]
    fn a_local_window_keeps_its_wall_clock_time_across_daylight_saving() {
        let oslo: Tz = "Europe/Oslo".parse().unwrap();
        let w = Window::parse(&window("0 2 * * *", 3600, Some("Europe/Oslo"))).unwrap();
        // Summer (UTC+2) and winter (UTC+1): 02:00 local both times.
        for (mo, d) in [(7, 1), (12, 1)] {
            let opens = at_local(oslo, 2026, mo, d, 2, 0).unwrap();
            assert_eq!(w.at(opens - 1), Openness::Closed { opens: Some(opens) });
        }
    }
}
