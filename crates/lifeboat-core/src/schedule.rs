//! When a job runs: the `schedule` keys of the config. A 5-field cron expression (minute,
//! hour, day of month, month, day of week; names such as `mon` and `jan` allowed), one of
//! `hourly`, `daily`, `weekly`, or `every <duration>` (`every 15m`).
//!
//! This module parses the calendar and finds its slots ([`Schedule::next_after`]); it runs
//! nothing (`lifeboat serve` does). A bad schedule is a config error at the key's line and
//! column (serde reports it there).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::HumanDuration;

/// A parsed `schedule` value; displays as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    kind: ScheduleKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleKind {
    /// Whenever the cron fields all match (UTC unless a time zone is configured).
    Cron(Cron),
    /// At a fixed interval.
    Every(HumanDuration),
}

/// The five cron fields as sets of allowed values (bit `n` set: value `n` matches). Day of
/// week runs 0–6 from Sunday (7 is read as Sunday too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cron {
    pub minutes: u64,
    pub hours: u32,
    pub days_of_month: u32,
    pub months: u16,
    pub days_of_week: u8,
    /// Both day fields are restricted (neither starts with `*`): as in cron, a day then
    /// matches when *either* matches (`0 0 13 * fri`: every 13th and every Friday).
    pub days_either: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid schedule `{input}`: {reason} (write a 5-field cron expression such as `0 2 * * *`, `hourly`, `daily`, `weekly`, or `every 15m`)"
)]
pub struct ScheduleError {
    input: String,
    reason: String,
}

impl Schedule {
    pub fn kind(&self) -> &ScheduleKind {
        &self.kind
    }

    /// The first slot strictly after `after`, in `after`'s time zone: the next whole minute
    /// the cron fields match, or the next multiple of the interval since 1970-01-01 UTC
    /// (`every 15m`: :00, :15, :30, :45), so slots do not slide with the time jobs take.
    /// `None` only for a cron expression that matches no day within five years
    /// (`0 0 31 feb *`).
    pub fn next_after(&self, after: &jiff::Zoned) -> Option<jiff::Zoned> {
        match &self.kind {
            ScheduleKind::Every(d) => {
                let step = i64::try_from(d.as_secs()).ok()?.max(1);
                let slot =
                    (after.timestamp().as_second().div_euclid(step) + 1).checked_mul(step)?;
                jiff::Timestamp::from_second(slot)
                    .ok()
                    .map(|t| t.to_zoned(after.time_zone().clone()))
            }
            ScheduleKind::Cron(c) => c.next_after(after),
        }
    }

    /// The length of one interval of the schedule from `at` (the time between the next two
    /// slots): a target whose last good backup is older than this is overdue.
    pub fn interval(&self, at: &jiff::Zoned) -> Option<jiff::SignedDuration> {
        let first = self.next_after(at)?;
        let second = self.next_after(&first)?;
        Some(first.duration_until(&second))
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ScheduleError {
            input: s.to_string(),
            reason,
        };
        let text = s.trim();
        let kind = match text {
            "hourly" => ScheduleKind::Cron(Cron::parse("0 * * * *").map_err(err)?),
            "daily" => ScheduleKind::Cron(Cron::parse("0 0 * * *").map_err(err)?),
            "weekly" => ScheduleKind::Cron(Cron::parse("0 0 * * 0").map_err(err)?),
            _ => match text.strip_prefix("every ") {
                Some(d) => {
                    let d: HumanDuration = d.trim().parse().map_err(|e| err(format!("{e}")))?;
                    if d.as_secs() < 1 {
                        return Err(err("an interval shorter than one second".into()));
                    }
                    ScheduleKind::Every(d)
                }
                None => ScheduleKind::Cron(Cron::parse(text).map_err(err)?),
            },
        };
        Ok(Self {
            text: text.to_string(),
            kind,
        })
    }
}

impl Cron {
    fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(format!(
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week), this one has {}",
                fields.len()
            ));
        };
        const MONTHS: &[&str] = &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let dow_bits = field(dow, "day of week", 0, 7, DAYS, 0)?;
        // 7 is Sunday as well as 0.
        let dow_bits = (dow_bits & 0x7f) | (dow_bits >> 7);
        Ok(Self {
            minutes: field(minute, "minute", 0, 59, &[], 0)?,
            hours: field(hour, "hour", 0, 23, &[], 0)? as u32,
            days_of_month: field(dom, "day of month", 1, 31, &[], 0)? as u32,
            months: field(month, "month", 1, 12, MONTHS, 1)? as u16,
            days_of_week: dow_bits as u8,
            days_either: !dom.starts_with('*') && !dow.starts_with('*'),
        })
    }

    /// Whether the wall-clock minute `t` matches every field.
    pub fn matches(&self, t: &jiff::civil::DateTime) -> bool {
        self.minutes >> t.minute() & 1 == 1
            && self.hours >> t.hour() & 1 == 1
            && self.months >> t.month() & 1 == 1
            && self.day_matches(t.day() as u32, t.weekday().to_sunday_zero_offset() as u32)
    }

    /// The first slot strictly after `after`: the next wall-clock minute (in `after`'s
    /// time zone) that matches. As cron does across daylight-saving changes: a minute the
    /// clocks skip runs just after the change, and a minute they repeat runs once.
    pub fn next_after(&self, after: &jiff::Zoned) -> Option<jiff::Zoned> {
        let tz = after.time_zone();
        let mut t = after
            .datetime()
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?;
        // Five years of minutes at most; a day that never comes ends the search.
        for _ in 0..5 * 366 * 24 * 60 {
            t = t.checked_add(jiff::SignedDuration::from_secs(60)).ok()?;
            if self.matches(&t) {
                // A skipped minute maps to the instant after the gap, a repeated one to
                // its first occurrence.
                let slot = tz.to_zoned(t).ok()?;
                if slot > *after {
                    return Some(slot);
                }
            }
        }
        None
    }

    /// Whether a day matches: `day_of_month` 1–31, `day_of_week` 0–6 from Sunday.
    pub fn day_matches(&self, day_of_month: u32, day_of_week: u32) -> bool {
        let dom = self.days_of_month >> day_of_month & 1 == 1;
        let dow = self.days_of_week >> day_of_week & 1 == 1;
        if self.days_either {
            dom || dow
        } else {
            dom && dow
        }
    }
}

/// One cron field as a bit set over `min..=max`. `names[i]` stands for `i + name_base`.
fn field(
    text: &str,
    what: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<u64, String> {
    let value = |v: &str| -> Result<u32, String> {
        let lower = v.to_ascii_lowercase();
        let n = match names.iter().position(|n| *n == lower) {
            Some(i) => i as u32 + name_base,
            None if v.bytes().all(|b| b.is_ascii_digit()) => v
                .parse::<u32>()
                .map_err(|_| format!("`{v}` is not a {what}"))?,
            None => return Err(format!("`{v}` is not a {what}")),
        };
        if n < min || n > max {
            return Err(format!("{what} `{v}` is outside {min}-{max}"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = (s.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| s.parse().ok())
                    .flatten()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step `{s}` of the {what} is not a positive number"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `5/15` runs from 5 to the end, as cron reads it.
                None if step > 1 => (value(r)?, max),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(format!("{what} range `{range}` runs backwards"));
        }
        bits |= (from..=to)
            .step_by(step as usize)
            .fold(0u64, |b, v| b | (1 << v));
    }
    Ok(bits)
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(text: &str) -> Cron {
        match text.parse::<Schedule>().unwrap().kind {
            ScheduleKind::Cron(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cron_fields_become_sets() {
        let c = cron("*/15 2 * * mon-fri");
        assert_eq!(c.minutes, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert_eq!(c.hours, 1 << 2);
        assert_eq!(c.days_of_month.count_ones(), 31);
        assert_eq!(c.months.count_ones(), 12);
        assert_eq!(c.days_of_week, 0b0111110);
        assert_eq!(cron("0 0 1,15 jan,jul 7").days_of_week, 1);
        assert_eq!(cron("0 0 1,15 jan,jul 7").months, 1 << 1 | 1 << 7);
        assert_eq!(cron("5/20 * * * *").minutes, 1 << 5 | 1 << 25 | 1 << 45);
        assert_eq!(cron("daily"), cron("0 0 * * *"));
        assert_eq!(cron("weekly").days_of_week, 1);
    }

    #[test]
    fn the_next_slot_follows_the_calendar() {
        let at = |t: &str| -> jiff::Zoned { format!("{t}+00:00[UTC]").parse().unwrap() };
        let next = |s: &str, t: &str| {
            s.parse::<Schedule>()
                .unwrap()
                .next_after(&at(t))
                .map(|z| z.strftime("%Y-%m-%d %H:%M:%S").to_string())
        };
        for (schedule, after, slot) in [
            // Strictly after: a slot at the very moment is the next one's predecessor.
            ("0 2 * * *", "2026-12-06T02:00:00", "2026-12-07 02:00:00"),
            ("0 2 * * *", "2026-12-06T01:59:30", "2026-12-06 02:00:00"),
            ("*/15 * * * *", "2026-12-06T10:07:59", "2026-12-06 10:15:00"),
            // The 13th or a Friday, whichever comes first: Friday 2026-12-11.
            ("0 0 13 * fri", "2026-12-06T00:00:00", "2026-12-11 00:00:00"),
            ("hourly", "2026-12-31T23:30:00", "2027-01-01 00:00:00"),
            // Multiples of the interval since the epoch, not `after` plus it.
            ("every 90s", "2026-12-06T10:00:00", "2026-12-06 10:01:30"),
            ("every 15m", "2026-12-06T10:07:59", "2026-12-06 10:15:00"),
            ("every 15m", "2026-12-06T10:15:00", "2026-12-06 10:30:00"),
            ("every 2h", "2026-12-06T10:59:59", "2026-12-06 12:00:00"),
        ] {
            assert_eq!(
                next(schedule, after).as_deref(),
                Some(slot),
                "{schedule} after {after}"
            );
        }
        assert_eq!(next("0 0 31 feb *", "2026-12-06T00:00:00"), None);
        let daily: Schedule = "daily".parse().unwrap();
        assert_eq!(
            daily.interval(&at("2026-12-06T10:00:00")),
            Some(jiff::SignedDuration::from_hours(24))
        );
        // In a time zone: 02:00 Bucharest is 00:00 UTC in winter.
        let bucharest = at("2026-12-06T12:00:00")
            .with_time_zone(jiff::tz::TimeZone::get("Europe/Bucharest").unwrap());
        let slot = "0 2 * * *"
            .parse::<Schedule>()
            .unwrap()
            .next_after(&bucharest)
            .unwrap();
        assert_eq!(slot.timestamp().to_string(), "2026-12-07T00:00:00Z");
    }

    /// From a review: across daylight-saving changes, as cron. Berlin skips 02:00–03:00 on
    /// 2026-03-29 and repeats 02:00–03:00 on 2026-10-25.
    #[test]
    fn daylight_saving_changes_neither_skip_nor_repeat_a_day() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let slots = |s: &str, from: &str, n: usize| {
            let s: Schedule = s.parse().unwrap();
            let mut t = from
                .parse::<jiff::Timestamp>()
                .unwrap()
                .to_zoned(berlin.clone());
            (0..n)
                .map(|_| {
                    t = s.next_after(&t).unwrap();
                    t.timestamp().to_string()
                })
                .collect::<Vec<_>>()
        };
        // 02:30 does not exist on the 29th: that day's run is just after the change.
        assert_eq!(
            slots("30 2 * * *", "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z"
            ]
        );
        // 02:30 comes twice on 2026-10-25: it runs once.
        assert_eq!(
            slots("30 2 * * *", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn intervals() {
        let s: Schedule = "every 15m".parse().unwrap();
        assert_eq!(s.kind, ScheduleKind::Every(HumanDuration::from_secs(900)));
        assert_eq!(s.to_string(), "every 15m");
    }

    /// cron's rule for the two day fields: restricted both, either matches; one of them
    /// `*` (also `*/2`), both must.
    #[test]
    fn the_day_fields_combine_as_in_cron() {
        let cron = |text: &str| match text.parse::<Schedule>().unwrap().kind {
            ScheduleKind::Cron(c) => c,
            ScheduleKind::Every(_) => panic!("{text}"),
        };
        // The 13th, or any Friday (5).
        let c = cron("0 0 13 * fri");
        assert!(c.day_matches(13, 2) && c.day_matches(20, 5) && !c.day_matches(20, 4));
        // Odd days that are Mondays.
        let c = cron("0 0 */2 * mon");
        assert!(c.day_matches(3, 1) && !c.day_matches(4, 1) && !c.day_matches(3, 2));
        // Every day of week, only the 1st.
        let c = cron("0 0 1 * *");
        assert!(c.day_matches(1, 3) && !c.day_matches(2, 3));
        // A full list is a restriction all the same: either matches.
        let c = cron("0 0 1 * 0-6");
        assert!(c.day_matches(2, 3));
    }

    #[test]
    fn nonsense_is_an_error_that_says_why() {
        for (text, why) in [
            ("this is not cron", "5 fields"),
            ("61 * * * *", "outside 0-59"),
            ("* 24 * * *", "outside 0-23"),
            ("* * 0 * *", "outside 1-31"),
            ("* * * foo *", "`foo` is not a month"),
            ("*/0 * * * *", "not a positive number"),
            ("*/+5 * * * *", "not a positive number"),
            ("+5 * * * *", "`+5` is not a minute"),
            ("10-5 * * * *", "runs backwards"),
            ("every soon", "invalid duration"),
            ("every 0s", "shorter than one second"),
            ("", "5 fields"),
        ] {
            let e = text.parse::<Schedule>().unwrap_err().to_string();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }
}
