//! Analyst reports across campaigns and sequence emails: the date range, the figures of a period,
//! the overview (headline figures against the previous period and a time series) and the
//! comparison table. Aggregates only — never a contact, an address or a contact id.
//!
//! Invariants:
//! - A range is a span of whole local days in the organisation's time zone, at most
//!   [`MAX_RANGE_DAYS`] long; its previous period is the same number of days just before it.
//! - Series buckets are local hours for ranges up to [`HOURLY_UP_TO_DAYS`] days, local days
//!   otherwise; the buckets of a range add up to its totals.
//! - Unique figures (messages opened, clicked, unsubscribed from) count each message once, in the
//!   hour of its first such event, so they add up across hours.
//! - Every count goes through `disclosure::suppress` for its reader: restricted readers see "<11"
//!   for a figure from fewer than 11 messages and more figures are withheld where a hidden one
//!   could be worked out from a total shown with the others (the series against its total, the
//!   outcomes against "sent", each comparison row against the all-email total). A rate or a change
//!   is only shown when the counts it comes from are.
//! - A drill-down withholds at least what the comparison of the same periods withholds of its
//!   source ([`Elsewhere`]), and what adds up to it on its own page.

use crate::disclosure::{Cell, Figure, Reader, Sum, suppress_forcing};
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest range a report covers.
pub const MAX_RANGE_DAYS: i64 = 366;
/// Ranges up to this many days are charted by hour, longer ones by day.
pub const HOURLY_UP_TO_DAYS: i64 = 2;

/// A report's date range: local dates, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
}

impl ReportRange {
    /// A range from user input ("YYYY-MM-DD"), or a message saying what is wrong with it.
    pub fn parse(from: &str, to: &str) -> Result<ReportRange, String> {
        let date = |s: &str, what: &str| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map_err(|_| format!("must have a {what} date written YYYY-MM-DD"))
        };
        ReportRange::new(date(from, "start")?, date(to, "end")?)
    }

    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<ReportRange, String> {
        if to < from {
            return Err("must end on or after the day it starts".into());
        }
        let r = ReportRange { from, to };
        if r.days() > MAX_RANGE_DAYS {
            return Err(format!("must cover at most {MAX_RANGE_DAYS} days"));
        }
        if from.year() < 2000 || to.year() >= 2200 {
            return Err("must lie between the years 2000 and 2199".into());
        }
        Ok(r)
    }

    /// The last `days` days up to and including `today`.
    pub fn last_days(today: NaiveDate, days: i64) -> ReportRange {
        ReportRange { from: today - Duration::days(days.clamp(1, MAX_RANGE_DAYS) - 1), to: today }
    }

    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// The same number of days just before this range.
    pub fn previous(&self) -> ReportRange {
        ReportRange { from: self.from - Duration::days(self.days()), to: self.from - Duration::days(1) }
    }

    pub fn bucket(&self) -> Bucket {
        if self.days() <= HOURLY_UP_TO_DAYS { Bucket::Hour } else { Bucket::Day }
    }

    /// The local hours the range covers: `[start, end)`.
    pub fn hours(&self) -> (NaiveDateTime, NaiveDateTime) {
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or_default();
        (midnight(self.from), midnight(self.to + Duration::days(1)))
    }

    /// Every bucket start of the range, in order.
    pub fn buckets(&self) -> Vec<NaiveDateTime> {
        let (start, end) = self.hours();
        let step = match self.bucket() {
            Bucket::Hour => Duration::hours(1),
            Bucket::Day => Duration::days(1),
        };
        let mut out = Vec::new();
        let mut t = start;
        while t < end {
            out.push(t);
            t += step;
        }
        out
    }
}

/// The counts of a period (or an hour, or a source): what the rollups hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Messages that reached an outcome: delivered + bounced + failed.
    pub sent: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub failed: u64,
    /// Messages opened by a person (once each).
    pub human_openers: u64,
    /// Opens by machines (privacy proxies, scanners), every one.
    pub machine_opens: u64,
    pub machine_openers: u64,
    /// Clicks by people, every one.
    pub human_clicks: u64,
    /// Messages clicked by a person (once each).
    pub human_clickers: u64,
    pub machine_clicks: u64,
    /// Messages unsubscribed from (once each).
    pub unsubscribes: u64,
    /// Spam complaints added to the suppression list (organisation totals only).
    pub complaints: u64,
    /// Bounces by class: no such mailbox or domain (hard), temporary and out of retries (soft),
    /// the receiver's rules or reputation (policy).
    pub bounced_hard: u64,
    pub bounced_soft: u64,
    pub bounced_policy: u64,
    /// Times a message was deferred (retried later).
    pub deferrals: u64,
    /// Addresses added to the suppression list, by reason (organisation totals only; complaints
    /// are `complaints`).
    pub suppressed_unsubscribed: u64,
    pub suppressed_hard_bounce: u64,
    pub suppressed_manual: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.bounced += o.bounced;
        self.failed += o.failed;
        self.human_openers += o.human_openers;
        self.machine_opens += o.machine_opens;
        self.machine_openers += o.machine_openers;
        self.human_clicks += o.human_clicks;
        self.human_clickers += o.human_clickers;
        self.machine_clicks += o.machine_clicks;
        self.unsubscribes += o.unsubscribes;
        self.complaints += o.complaints;
        self.bounced_hard += o.bounced_hard;
        self.bounced_soft += o.bounced_soft;
        self.bounced_policy += o.bounced_policy;
        self.deferrals += o.deferrals;
        self.suppressed_unsubscribed += o.suppressed_unsubscribed;
        self.suppressed_hard_bounce += o.suppressed_hard_bounce;
        self.suppressed_manual += o.suppressed_manual;
    }
}

/// A figure of the overview, in the order shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Sent,
    Delivered,
    Bounced,
    BounceRate,
    HumanOpeners,
    OpenRate,
    MachineOpens,
    HumanClicks,
    HumanClickers,
    ClickRate,
    ClickToOpen,
    Unsubscribes,
    Complaints,
}

impl Metric {
    pub const ALL: [Metric; 13] = [
        Metric::Sent,
        Metric::Delivered,
        Metric::Bounced,
        Metric::BounceRate,
        Metric::HumanOpeners,
        Metric::OpenRate,
        Metric::MachineOpens,
        Metric::HumanClicks,
        Metric::HumanClickers,
        Metric::ClickRate,
        Metric::ClickToOpen,
        Metric::Unsubscribes,
        Metric::Complaints,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Metric::Sent => "Sent",
            Metric::Delivered => "Delivered",
            Metric::Bounced => "Bounced",
            Metric::BounceRate => "Bounce rate",
            Metric::HumanOpeners => "Opened (people)",
            Metric::OpenRate => "Open rate",
            Metric::MachineOpens => "Machine opens",
            Metric::HumanClicks => "Clicks (people)",
            Metric::HumanClickers => "Clicked (messages)",
            Metric::ClickRate => "Click rate",
            Metric::ClickToOpen => "Click-to-open rate",
            Metric::Unsubscribes => "Unsubscribes",
            Metric::Complaints => "Complaints",
        }
    }

    /// A short explanation for the figure's tooltip and the CSV.
    pub fn hint(self) -> &'static str {
        match self {
            Metric::Sent => "Messages that reached an outcome: delivered, bounced or failed.",
            Metric::Delivered => "Messages the receiving server accepted.",
            Metric::Bounced => "Messages the receiving server refused.",
            Metric::BounceRate => "Bounced ÷ sent.",
            Metric::HumanOpeners => "Messages opened by a person, each counted once at its first open.",
            Metric::OpenRate => "Messages opened by a person ÷ delivered.",
            Metric::MachineOpens => "Opens by privacy proxies and scanners: not people, shown apart.",
            Metric::HumanClicks => "Every click by a person.",
            Metric::HumanClickers => "Messages a person clicked in, each counted once.",
            Metric::ClickRate => "Messages clicked ÷ delivered.",
            Metric::ClickToOpen => "Messages clicked ÷ messages opened.",
            Metric::Unsubscribes => "Messages whose recipient unsubscribed.",
            Metric::Complaints => "Spam complaints added to the suppression list.",
        }
    }

    pub fn is_rate(self) -> bool {
        matches!(self, Metric::BounceRate | Metric::OpenRate | Metric::ClickRate | Metric::ClickToOpen)
    }

    /// Whether a rise is good news (colours the change).
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::Bounced | Metric::BounceRate | Metric::Unsubscribes | Metric::Complaints)
    }
}

/// The counts of [`Totals`] a reader may see, after disclosure control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    pub sent: Figure,
    pub delivered: Figure,
    pub bounced: Figure,
    pub failed: Figure,
    pub human_openers: Figure,
    pub machine_opens: Figure,
    pub human_clicks: Figure,
    pub human_clickers: Figure,
    pub unsubscribes: Figure,
    pub complaints: Figure,
}

/// Cell indexes of one [`Totals`] in a suppression table (see [`cells`]).
const PER_TOTALS: usize = 10;

/// The cells of one [`Totals`], in [`Shown`]'s order, and the sum the reader sees inside it
/// (sent = delivered + bounced + failed), offset by `base`.
fn cells(t: &Totals, base: usize) -> ([Cell; PER_TOTALS], Sum) {
    (
        [
            Cell::people(t.sent),
            Cell::people(t.delivered),
            Cell::people(t.bounced),
            Cell::people(t.failed),
            Cell::people(t.human_openers),
            Cell::events(t.machine_opens, t.machine_openers),
            Cell::events(t.human_clicks, t.human_clickers),
            Cell::people(t.human_clickers),
            Cell::people(t.unsubscribes),
            Cell::people(t.complaints),
        ],
        Sum { total: base, parts: vec![base + 1, base + 2, base + 3] },
    )
}

impl Shown {
    /// The figures in [`cells`] order, for the cell indexes of those hidden here.
    fn figures(&self) -> [Figure; PER_TOTALS] {
        [
            self.sent,
            self.delivered,
            self.bounced,
            self.failed,
            self.human_openers,
            self.machine_opens,
            self.human_clicks,
            self.human_clickers,
            self.unsubscribes,
            self.complaints,
        ]
    }

    /// The cell indexes (offset by `base`) of the figures hidden here.
    fn hidden_cells(&self, base: usize) -> Vec<usize> {
        self.figures().iter().enumerate().filter(|(_, f)| f.is_hidden()).map(|(i, _)| base + i).collect()
    }
}

/// How a source's figures are shown on the other pages that show them too (the comparison of
/// the range and of the period before): its drill-down hides at least as much, so that no page
/// gives away a figure another one withholds (a figure withheld there to protect a small one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Elsewhere {
    pub current: Option<Shown>,
    pub previous: Option<Shown>,
}

impl Elsewhere {
    fn hidden(shown: Option<&Shown>, base: usize) -> Vec<usize> {
        shown.map(|s| s.hidden_cells(base)).unwrap_or_default()
    }
}

fn shown_at(f: &[Figure], base: usize) -> Shown {
    let g = |i: usize| f.get(base + i).copied().unwrap_or(Figure::Withheld);
    Shown {
        sent: g(0),
        delivered: g(1),
        bounced: g(2),
        failed: g(3),
        human_openers: g(4),
        machine_opens: g(5),
        human_clicks: g(6),
        human_clickers: g(7),
        unsubscribes: g(8),
        complaints: g(9),
    }
}

/// A table of several [`Totals`] and a total row they add up to, suppressed together: row `i`'s
/// cells are at `(i + 1) × PER_TOTALS`, the total's at 0.
/// `forced`: cells hidden from the start (see [`suppress_forcing`]).
fn suppress_rows(
    reader: Reader,
    total: &Totals,
    rows: &[Totals],
    rows_sum_to_total: bool,
    forced: &[usize],
) -> (Shown, Vec<Shown>) {
    let mut all: Vec<Cell> = Vec::with_capacity((rows.len() + 1) * PER_TOTALS);
    let mut sums = Vec::new();
    for (i, t) in std::iter::once(total).chain(rows.iter()).enumerate() {
        let (c, s) = cells(t, i * PER_TOTALS);
        all.extend(c);
        sums.push(s);
    }
    if rows_sum_to_total && !rows.is_empty() {
        for k in 0..PER_TOTALS {
            sums.push(Sum { total: k, parts: (1..=rows.len()).map(|i| i * PER_TOTALS + k).collect() });
        }
    }
    // Where "sent" and its outcomes would pin a small one, "sent" goes: delivered matters more.
    let sent: Vec<usize> = (0..=rows.len()).map(|i| i * PER_TOTALS).collect();
    let f = suppress_forcing(reader, &all, &sums, &sent, forced);
    (shown_at(&f, 0), (1..=rows.len()).map(|i| shown_at(&f, i * PER_TOTALS)).collect())
}

/// The comparison table's figures: the rows' total (complaints are not attributed to a message,
/// so not part of it) and each row, suppressed together.
pub fn compared(reader: Reader, total: &Totals, rows: &[Totals]) -> (Shown, Vec<Shown>) {
    let mut total = *total;
    total.complaints = 0;
    suppress_rows(reader, &total, rows, true, &[])
}

/// `num ÷ den` when both are shown and the denominator is not zero.
fn rate(num: Figure, den: Figure) -> Option<f64> {
    let (n, d) = (num.shown()?, den.shown()?);
    (d > 0).then(|| n as f64 / d as f64)
}

impl Shown {
    /// The value of `m`: a count, or a rate in 0..=1 (None when hidden or undefined).
    pub fn value(&self, m: Metric) -> Value {
        match m {
            Metric::Sent => Value::Count(self.sent),
            Metric::Delivered => Value::Count(self.delivered),
            Metric::Bounced => Value::Count(self.bounced),
            Metric::BounceRate => Value::Rate(rate(self.bounced, self.sent)),
            Metric::HumanOpeners => Value::Count(self.human_openers),
            Metric::OpenRate => Value::Rate(rate(self.human_openers, self.delivered)),
            Metric::MachineOpens => Value::Count(self.machine_opens),
            Metric::HumanClicks => Value::Count(self.human_clicks),
            Metric::HumanClickers => Value::Count(self.human_clickers),
            Metric::ClickRate => Value::Rate(rate(self.human_clickers, self.delivered)),
            Metric::ClickToOpen => Value::Rate(rate(self.human_clickers, self.human_openers)),
            Metric::Unsubscribes => Value::Count(self.unsubscribes),
            Metric::Complaints => Value::Count(self.complaints),
        }
    }
}

/// A figure's value as shown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Value {
    Count(Figure),
    /// 0..=1; None when hidden or undefined (nothing to divide by).
    Rate(Option<f64>),
}

impl Value {
    /// The number, when shown.
    pub fn number(self) -> Option<f64> {
        match self {
            Value::Count(f) => f.shown().map(|n| n as f64),
            Value::Rate(r) => r,
        }
    }

    /// Text for a table cell: "1204", "<11", "23.4%", "–".
    pub fn label(self) -> String {
        match self {
            Value::Count(f) => f.label(),
            Value::Rate(Some(r)) => format!("{:.1}%", r * 100.0),
            Value::Rate(None) => "–".into(),
        }
    }

    /// The CSV cell: the number (rates as a fraction with four places), or the label when hidden.
    pub fn csv(self) -> String {
        match self {
            Value::Count(f) => f.shown().map(|n| n.to_string()).unwrap_or_else(|| f.label()),
            Value::Rate(Some(r)) => format!("{r:.4}"),
            Value::Rate(None) => String::new(),
        }
    }
}

/// The change of a figure against the previous period: relative for counts (+12% = ×1.12),
/// in percentage points for rates. None when either side is hidden or the previous count is 0.
pub fn change(m: Metric, now: Value, before: Value) -> Option<f64> {
    let (a, b) = (now.number()?, before.number()?);
    if m.is_rate() {
        Some((a - b) * 100.0)
    } else if b > 0.0 {
        Some((a - b) / b)
    } else {
        None
    }
}

/// "+12%", "−3.5 pts", "no change"
pub fn change_label(m: Metric, c: Option<f64>) -> String {
    match c {
        None => "–".into(),
        Some(c) if m.is_rate() => {
            if c.abs() < 0.05 {
                "no change".into()
            } else {
                format!("{}{:.1} pts", if c > 0.0 { "+" } else { "−" }, c.abs())
            }
        }
        Some(c) => {
            if (c * 100.0).abs() < 0.5 {
                "no change".into()
            } else {
                format!("{}{:.0}%", if c > 0.0 { "+" } else { "−" }, (c * 100.0).abs())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadlineFigure {
    pub metric: Metric,
    pub current: Value,
    pub previous: Value,
    pub change: Option<f64>,
}

/// One bucket of the time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub start: NaiveDateTime,
    pub delivered: Figure,
    pub human_openers: Figure,
    pub human_clicks: Figure,
}

/// The overview of a range for its reader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub range: ReportRange,
    pub previous: ReportRange,
    pub time_zone: String,
    pub bucket: Bucket,
    pub figures: Vec<HeadlineFigure>,
    pub series: Vec<SeriesPoint>,
    /// Whether small figures are hidden for this reader.
    pub restricted: bool,
    /// Facts are still waiting to be rolled up: the figures are a little behind.
    pub catching_up: bool,
    /// The time series as a server-rendered SVG chart (filled by the server).
    pub chart_svg: String,
    pub deliverability: Deliverability,
}

/// How mail got through in the range: bounces by class, failures, deferrals, and what was added
/// to the suppression list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deliverability {
    pub bounced_hard: Figure,
    pub bounced_soft: Figure,
    pub bounced_policy: Figure,
    pub failed: Figure,
    pub deferrals: Figure,
    pub suppressed_unsubscribed: Figure,
    pub suppressed_hard_bounce: Figure,
    pub suppressed_complaint: Figure,
    pub suppressed_manual: Figure,
    /// Sent, delivered and bounced by the recipients' mailbox provider (filled by the service).
    pub by_provider: Option<crate::breakdowns::Breakdown>,
    /// Delivered messages by the TLS version they went over (filled by the service).
    pub by_tls: Option<crate::breakdowns::Breakdown>,
}

impl Deliverability {
    /// (label, figure) rows of the bounces table.
    pub fn bounces(&self) -> [(&'static str, Figure); 4] {
        [
            ("Hard: no such mailbox or domain", self.bounced_hard),
            ("Soft: temporary refusals, out of retries", self.bounced_soft),
            ("Policy: the receiver's rules or reputation", self.bounced_policy),
            ("Failed: not attempted or given up", self.failed),
        ]
    }
    /// (label, figure) rows of the suppression-list growth table.
    pub fn suppressions(&self) -> [(&'static str, Figure); 4] {
        [
            ("Unsubscribed from everything", self.suppressed_unsubscribed),
            ("Hard bounce", self.suppressed_hard_bounce),
            ("Spam complaint", self.suppressed_complaint),
            ("Added by staff", self.suppressed_manual),
        ]
    }
}

/// Picks one cell out of a bucket's totals.
type Pick = fn(&Totals) -> Cell;

/// What the overview is built from: the range's totals, the previous period's and the range's
/// buckets (every bucket of `range.buckets()`, zeros included, in order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverviewCounts {
    pub current: Totals,
    pub previous: Totals,
    pub buckets: Vec<Totals>,
}

impl Overview {
    pub fn build(reader: Reader, range: ReportRange, time_zone: String, c: &OverviewCounts) -> Overview {
        Overview::build_hiding(reader, range, time_zone, c, &Elsewhere::default())
    }

    /// [`Overview::build`] of figures that other pages show too, hiding at least what they hide.
    pub fn build_hiding(
        reader: Reader,
        range: ReportRange,
        time_zone: String,
        c: &OverviewCounts,
        elsewhere: &Elsewhere,
    ) -> Overview {
        // One table, so that what one part of the page hides no other part gives away: the
        // headline cells, then each series line's buckets, which add up to its headline figure.
        let n = c.buckets.len();
        let (head, sent_sum) = cells(&c.current, 0);
        let mut all: Vec<Cell> = head.to_vec();
        let mut sums = vec![sent_sum];
        let lines: [(usize, Pick); 3] = [
            (1, |t| Cell::people(t.delivered)),
            (4, |t| Cell::people(t.human_openers)),
            (6, |t| Cell::events(t.human_clicks, t.human_clickers)),
        ];
        for (k, (total, pick)) in lines.iter().enumerate() {
            let base = PER_TOTALS + k * n;
            all.extend(c.buckets.iter().map(pick));
            sums.push(Sum { total: *total, parts: (base..base + n).collect() });
        }
        // Deliverability: the bounce classes add up to "bounced" (cell 2); the rest stand alone.
        let d0 = all.len();
        let t = &c.current;
        all.extend(
            [
                t.bounced_hard,
                t.bounced_soft,
                t.bounced_policy,
                t.deferrals,
                t.suppressed_unsubscribed,
                t.suppressed_hard_bounce,
                t.suppressed_manual,
            ]
            .map(Cell::people),
        );
        sums.push(Sum { total: 2, parts: vec![d0, d0 + 1, d0 + 2] });
        let f = suppress_forcing(reader, &all, &sums, &[0], &Elsewhere::hidden(elsewhere.current.as_ref(), 0));
        let at = |i: usize| f.get(i).copied().unwrap_or(Figure::Withheld);
        let current = shown_at(&f, 0);
        let line = |k: usize, i: usize| f.get(PER_TOTALS + k * n + i).copied().unwrap_or(Figure::Withheld);
        let (previous, _) =
            suppress_rows(reader, &c.previous, &[], false, &Elsewhere::hidden(elsewhere.previous.as_ref(), 0));
        let figures = Metric::ALL
            .iter()
            .map(|&m| {
                let (now, before) = (current.value(m), previous.value(m));
                HeadlineFigure { metric: m, current: now, previous: before, change: change(m, now, before) }
            })
            .collect();
        let series = range
            .buckets()
            .into_iter()
            .enumerate()
            .map(|(i, start)| SeriesPoint {
                start,
                delivered: line(0, i),
                human_openers: line(1, i),
                human_clicks: line(2, i),
            })
            .collect();
        let deliverability = Deliverability {
            bounced_hard: at(d0),
            bounced_soft: at(d0 + 1),
            bounced_policy: at(d0 + 2),
            failed: current.failed,
            deferrals: at(d0 + 3),
            suppressed_unsubscribed: at(d0 + 4),
            suppressed_hard_bounce: at(d0 + 5),
            suppressed_complaint: current.complaints,
            suppressed_manual: at(d0 + 6),
            by_provider: None,
            by_tls: None,
        };
        Overview {
            range,
            previous: range.previous(),
            time_zone,
            bucket: range.bucket(),
            figures,
            series,
            restricted: reader == Reader::Restricted,
            catching_up: false,
            chart_svg: String::new(),
            deliverability,
        }
    }

    pub fn figure(&self, m: Metric) -> Option<&HeadlineFigure> {
        self.figures.iter().find(|f| f.metric == m)
    }

    /// The overview as CSV: the headline figures, then the series.
    pub fn csv(&self) -> String {
        let mut out = String::from("section,figure,current,previous,change\n");
        for f in &self.figures {
            out.push_str(&format!(
                "headline,{},{},{},{}\n",
                csv_field(f.metric.label()),
                f.current.csv(),
                f.previous.csv(),
                f.change.map(|c| format!("{c:.4}")).unwrap_or_default()
            ));
        }
        out.push_str("\ndeliverability,figure,current\n");
        for (label, f) in self.deliverability.bounces() {
            out.push_str(&format!("bounces,{},{}\n", csv_field(label), Value::Count(f).csv()));
        }
        out.push_str(&format!(
            "deferrals,Deferred (retried later),{}\n",
            Value::Count(self.deliverability.deferrals).csv()
        ));
        for (label, f) in self.deliverability.suppressions() {
            out.push_str(&format!("suppression_list_added,{},{}\n", csv_field(label), Value::Count(f).csv()));
        }
        out.push_str("\nbucket_start,delivered,opened_by_people,clicks_by_people\n");
        for p in &self.series {
            out.push_str(&format!(
                "{},{},{},{}\n",
                p.start.format("%Y-%m-%d %H:%M"),
                Value::Count(p.delivered).csv(),
                Value::Count(p.human_openers).csv(),
                Value::Count(p.human_clicks).csv()
            ));
        }
        for b in [&self.deliverability.by_provider, &self.deliverability.by_tls].into_iter().flatten() {
            out.push('\n');
            out.push_str(&b.csv());
        }
        out
    }
}

/// A CSV field, quoted when needed; a leading formula character is neutralised (a spreadsheet
/// would otherwise run a campaign name like "=HYPERLINK(…)").
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// What the reports page needs before it asks for figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSetup {
    /// The organisation's report time zone (IANA name).
    pub time_zone: String,
    /// Today's date in it.
    pub today: NaiveDate,
    /// Whether the reader may change the zone (admins).
    pub may_change_time_zone: bool,
}

/// What a comparison row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Campaign,
    SequenceEmail,
    ApiMessage,
}

impl SourceKind {
    pub fn code(self) -> i16 {
        match self {
            SourceKind::Campaign => 1,
            SourceKind::SequenceEmail => 2,
            SourceKind::ApiMessage => 3,
        }
    }
    pub fn from_code(c: i16) -> Option<SourceKind> {
        match c {
            1 => Some(SourceKind::Campaign),
            2 => Some(SourceKind::SequenceEmail),
            3 => Some(SourceKind::ApiMessage),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Campaign => "Campaign",
            SourceKind::SequenceEmail => "Sequence email",
            SourceKind::ApiMessage => "API messages",
        }
    }
}

/// A campaign, a sequence's email step or the API's messages, as rolled up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceKey {
    pub kind: i16,
    pub id: Uuid,
    pub step_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonRow {
    pub kind: SourceKind,
    pub id: Uuid,
    /// The sequence step, for sequence emails.
    pub step_id: Option<String>,
    /// Campaign name, or "sequence · step".
    pub name: String,
    /// Where its own report is.
    pub href: Option<String>,
    pub figures: Shown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub range: ReportRange,
    pub time_zone: String,
    pub total: Shown,
    pub rows: Vec<ComparisonRow>,
    pub restricted: bool,
}

/// The columns of the comparison table (and its CSV), in order.
pub const COMPARISON_COLUMNS: [Metric; 10] = [
    Metric::Sent,
    Metric::Delivered,
    Metric::BounceRate,
    Metric::HumanOpeners,
    Metric::OpenRate,
    Metric::MachineOpens,
    Metric::HumanClicks,
    Metric::ClickRate,
    Metric::ClickToOpen,
    Metric::Unsubscribes,
];

/// A row before disclosure control.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonInput {
    pub kind: SourceKind,
    pub id: Uuid,
    pub step_id: Option<String>,
    pub name: String,
    pub href: Option<String>,
    pub totals: Totals,
}

impl Comparison {
    /// `total` is the organisation's totals for the range, which the rows add up to (every source
    /// is a row), so each column is protected against "total minus the other rows".
    pub fn build(
        reader: Reader,
        range: ReportRange,
        time_zone: String,
        total: &Totals,
        rows: Vec<ComparisonInput>,
    ) -> Comparison {
        let totals: Vec<Totals> = rows.iter().map(|r| r.totals).collect();
        let (total, shown) = compared(reader, total, &totals);
        Comparison {
            range,
            time_zone,
            total,
            rows: rows
                .into_iter()
                .zip(shown)
                .map(|(r, figures)| ComparisonRow {
                    kind: r.kind,
                    id: r.id,
                    step_id: r.step_id,
                    name: r.name,
                    href: r.href,
                    figures,
                })
                .collect(),
            restricted: reader == Reader::Restricted,
        }
    }

    pub fn csv(&self) -> String {
        let mut out = String::from("kind,name");
        for m in COMPARISON_COLUMNS {
            out.push(',');
            out.push_str(&csv_field(m.label()));
        }
        out.push('\n');
        let mut line = |kind: &str, name: &str, s: &Shown| {
            out.push_str(&csv_field(kind));
            out.push(',');
            out.push_str(&csv_field(name));
            for m in COMPARISON_COLUMNS {
                out.push(',');
                out.push_str(&s.value(m).csv());
            }
            out.push('\n');
        };
        line("All email", "All email", &self.total);
        for r in &self.rows {
            line(r.kind.label(), &r.name, &r.figures);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn ranges_parse_refuse_and_know_their_previous_period_and_buckets() {
        let r = ReportRange::parse("2026-11-01", "2026-11-30").unwrap();
        assert_eq!(r.days(), 30);
        assert_eq!(r.previous(), ReportRange { from: d("2026-10-02"), to: d("2026-10-31") });
        assert_eq!(r.bucket(), Bucket::Day);
        assert_eq!(r.buckets().len(), 30);
        let two = ReportRange::parse("2026-11-01", "2026-11-02").unwrap();
        assert_eq!((two.bucket(), two.buckets().len()), (Bucket::Hour, 48));
        for (a, b) in [
            ("2026-11-02", "2026-11-01"),
            ("yesterday", "2026-11-01"),
            ("2026-11-01", "2026-13-01"),
            ("2025-01-01", "2026-12-31"),
            ("1900-01-01", "1900-01-02"),
            ("2026-11-01'; DROP TABLE x", "2026-11-02"),
        ] {
            assert!(ReportRange::parse(a, b).is_err(), "{a}..{b}");
        }
        assert_eq!(ReportRange::last_days(d("2026-12-07"), 7).from, d("2026-12-01"));
    }

    fn totals(delivered: u64, bounced: u64, opened: u64, clicks: u64) -> Totals {
        Totals {
            sent: delivered + bounced,
            delivered,
            bounced,
            human_openers: opened,
            human_clicks: clicks,
            human_clickers: clicks,
            ..Totals::default()
        }
    }

    #[test]
    fn the_overview_hides_small_buckets_and_one_more_so_none_can_be_worked_out() {
        let range = ReportRange::parse("2026-11-01", "2026-11-03").unwrap();
        let buckets = vec![totals(3, 0, 2, 1), totals(40, 1, 20, 12), totals(57, 2, 30, 15)];
        let mut current = Totals::default();
        for b in &buckets {
            current.add(b);
        }
        let c = OverviewCounts { current, previous: totals(80, 5, 40, 20), buckets };
        let full = Overview::build(Reader::Full, range, "UTC".into(), &c);
        assert_eq!(full.series[0].delivered, Figure::Exact(3));
        assert_eq!(full.figure(Metric::Delivered).unwrap().current, Value::Count(Figure::Exact(100)));
        let change = full.figure(Metric::Delivered).unwrap().change.unwrap();
        assert!((change - 0.25).abs() < 1e-9);
        let o = Overview::build(Reader::Restricted, range, "UTC".into(), &c);
        let delivered: Vec<Figure> = o.series.iter().map(|p| p.delivered).collect();
        assert_eq!(delivered[0], Figure::FewerThan(11));
        assert!(delivered[1].is_hidden(), "the smallest other bucket goes too: 100 − 57 would give 43 − 40");
        assert_eq!(delivered[2], Figure::Exact(57));
        assert_eq!(o.figure(Metric::Delivered).unwrap().current, Value::Count(Figure::Exact(100)));
        // Bounced 3 of sent 103: hidden, and so is its rate; failed (0) hidden, delivered shown —
        // so sent = delivered + bounced + failed must not pin bounced: one more goes.
        let b = o.figure(Metric::Bounced).unwrap();
        assert_eq!(b.current, Value::Count(Figure::FewerThan(11)));
        assert_eq!(o.figure(Metric::BounceRate).unwrap().current, Value::Rate(None));
        assert_eq!(b.change, None);
        let csv = o.csv();
        assert!(csv.contains("headline,Bounced,<11,<11,"), "{csv}");
        assert!(!csv.contains(",3,"), "the hidden bucket's value is nowhere: {csv}");
    }

    #[test]
    fn comparison_rows_are_protected_against_the_total() {
        let range = ReportRange::parse("2026-11-01", "2026-11-30").unwrap();
        let a = totals(3, 0, 3, 0);
        let b = totals(200, 4, 90, 30);
        let c = totals(150, 2, 60, 25);
        let mut total = Totals::default();
        for t in [&a, &b, &c] {
            total.add(t);
        }
        let row = |name: &str, t: Totals| ComparisonInput {
            kind: SourceKind::Campaign,
            id: Uuid::nil(),
            step_id: None,
            name: name.into(),
            href: None,
            totals: t,
        };
        let cmp = Comparison::build(
            Reader::Restricted,
            range,
            "UTC".into(),
            &total,
            vec![row("small", a), row("b", b), row("c", c)],
        );
        assert_eq!(cmp.rows[0].figures.delivered, Figure::FewerThan(11));
        assert!(
            cmp.rows[1].figures.delivered.is_hidden() || cmp.rows[2].figures.delivered.is_hidden(),
            "353 − 200 − 150 would give the small row"
        );
        let csv = cmp.csv();
        assert!(csv.lines().nth(2).unwrap().starts_with("Campaign,small,<11,<11"), "{csv}");
        let full = Comparison::build(Reader::Full, range, "UTC".into(), &total, vec![row("=cmd()", a)]);
        assert!(full.csv().contains("Campaign,'=cmd(),3,3"), "{}", full.csv());
    }

    #[test]
    fn changes_are_relative_for_counts_and_points_for_rates() {
        let c = change(Metric::Sent, Value::Count(Figure::Exact(120)), Value::Count(Figure::Exact(100)));
        assert_eq!(change_label(Metric::Sent, c), "+20%");
        let r = change(Metric::OpenRate, Value::Rate(Some(0.30)), Value::Rate(Some(0.325)));
        assert_eq!(change_label(Metric::OpenRate, r), "−2.5 pts");
        assert_eq!(change(Metric::Sent, Value::Count(Figure::Exact(5)), Value::Count(Figure::Exact(0))), None);
        assert_eq!(change(Metric::Sent, Value::Count(Figure::FewerThan(11)), Value::Count(Figure::Exact(50))), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Drill-down of one campaign or sequence email
// ---------------------------------------------------------------------------------------------

/// Which source a drill-down or a curve is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceRef {
    pub kind: SourceKind,
    pub id: Uuid,
    /// The step, for sequence emails ("" otherwise).
    #[serde(default)]
    pub step_id: String,
}

impl SourceRef {
    /// The drill-down page's address.
    pub fn href(&self, range: &ReportRange) -> String {
        let kind = match self.kind {
            SourceKind::Campaign => "campaign",
            SourceKind::SequenceEmail => "sequence_email",
            SourceKind::ApiMessage => "api_message",
        };
        format!("/reports/source?kind={kind}&id={}&step={}&from={}&to={}", self.id, self.step_id, range.from, range.to)
    }

    pub fn parse_kind(s: &str) -> Option<SourceKind> {
        match s {
            "campaign" => Some(SourceKind::Campaign),
            "sequence_email" => Some(SourceKind::SequenceEmail),
            "api_message" => Some(SourceKind::ApiMessage),
            _ => None,
        }
    }
}

/// Buckets of hours since the send for the opens-since-send curve: (from hour, label).
pub const SINCE_BUCKETS: [(i32, &str); 9] = [
    (0, "first hour"),
    (1, "1–2 h"),
    (2, "2–4 h"),
    (4, "4–8 h"),
    (8, "8–24 h"),
    (24, "day 2"),
    (48, "day 3"),
    (72, "days 4–7"),
    (168, "after a week"),
];

/// The bucket of `hours` since the send.
pub fn since_bucket(hours: i32) -> usize {
    SINCE_BUCKETS.iter().rposition(|(from, _)| hours >= *from).unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SincePoint {
    pub label: String,
    pub openers: Figure,
    pub clickers: Figure,
    /// Share of delivered messages opened by the end of this bucket (None when a figure it
    /// adds up is hidden).
    pub opened_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkFigure {
    pub position: i32,
    pub url: String,
    pub clicks: Figure,
    pub clickers: Figure,
    pub machine_clicks: Figure,
}

/// The drill-down of one source: its overview over the range (headline figures, series, chart),
/// opens and clicks since the send, links by clicks, and a weekday × hour heatmap of human opens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drill {
    pub source: SourceRef,
    pub name: String,
    pub kind_label: String,
    /// The campaign's or sequence's own page.
    pub href: Option<String>,
    pub overview: Overview,
    pub since: Vec<SincePoint>,
    pub links: Vec<LinkFigure>,
    /// Monday first; 24 hours each (local time).
    pub heatmap: Vec<Vec<Figure>>,
    /// The opens-since-send curve as a chart (filled by the server).
    pub since_svg: String,
    /// By mailbox provider, email client and audience segment or list (filled by the service;
    /// a dimension with no figures is left out).
    pub breakdowns: Vec<crate::breakdowns::Breakdown>,
}

pub const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

impl Drill {
    /// Every table of the drill-down as one CSV: headline figures, series, since the send,
    /// links, heatmap.
    pub fn csv(&self) -> String {
        let mut out = format!("source,{},{}\n\n", csv_field(self.source.kind.label()), csv_field(&self.name));
        out.push_str(&self.overview.csv());
        out.push_str("\nsince_send,opened_by_people,clicked_by_people,opened_share\n");
        for p in &self.since {
            out.push_str(&format!(
                "{},{},{},{}\n",
                csv_field(&p.label),
                Value::Count(p.openers).csv(),
                Value::Count(p.clickers).csv(),
                Value::Rate(p.opened_share).csv()
            ));
        }
        out.push_str("\nlink,clicks_by_people,people_who_clicked,machine_clicks\n");
        for l in &self.links {
            out.push_str(&format!(
                "{},{},{},{}\n",
                csv_field(&l.url),
                Value::Count(l.clicks).csv(),
                Value::Count(l.clickers).csv(),
                Value::Count(l.machine_clicks).csv()
            ));
        }
        out.push_str("\nweekday");
        for h in 0..24 {
            out.push_str(&format!(",{h:02}:00"));
        }
        out.push('\n');
        for (d, row) in self.heatmap.iter().enumerate() {
            out.push_str(WEEKDAYS.get(d).copied().unwrap_or(""));
            for f in row {
                out.push(',');
                out.push_str(&Value::Count(*f).csv());
            }
            out.push('\n');
        }
        for b in &self.breakdowns {
            out.push('\n');
            out.push_str(&b.csv());
        }
        out
    }
}

/// What a drill-down is built from (before disclosure control).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrillCounts {
    pub overview: OverviewCounts,
    /// Delivered over the source's whole life (the curve's denominator) and first human opens /
    /// clicks per [`SINCE_BUCKETS`] bucket.
    pub delivered_ever: u64,
    pub since_openers: [u64; 9],
    pub since_clickers: [u64; 9],
    /// (position, url, human clicks, human clickers, machine clicks)
    pub links: Vec<(i32, String, u64, u64, u64)>,
    /// human_openers by [weekday Monday=0][hour].
    pub heatmap: [[u64; 24]; 7],
    /// How the comparison shows the source's figures of the range and of the period before.
    pub elsewhere: Elsewhere,
}

impl Drill {
    pub fn build(
        reader: Reader,
        source: SourceRef,
        name: String,
        href: Option<String>,
        range: ReportRange,
        time_zone: String,
        c: &DrillCounts,
    ) -> Drill {
        let mut overview = Overview::build_hiding(reader, range, time_zone, &c.overview, &c.elsewhere);
        // The heatmap decomposes the range's human opens too: suppressed together with them so
        // neither gives the other away (a cell is one local hour when the range is short).
        let n = c.overview.buckets.len();
        let mut cells: Vec<Cell> = vec![Cell::people(c.overview.current.human_openers)];
        cells.extend(c.overview.buckets.iter().map(|b| Cell::people(b.human_openers)));
        let heat0 = cells.len();
        for day in &c.heatmap {
            cells.extend(day.iter().map(|&v| Cell::people(v)));
        }
        let mut sums = vec![
            Sum { total: 0, parts: (1..=n).collect() },
            Sum { total: 0, parts: (heat0..heat0 + 7 * 24).collect() },
        ];
        if range.days() <= 7 {
            for (i, start) in range.buckets().iter().enumerate() {
                let day = start.weekday().num_days_from_monday() as usize;
                let parts = match range.bucket() {
                    Bucket::Day => (0..24).map(|h| heat0 + day * 24 + h).collect(),
                    Bucket::Hour => vec![heat0 + day * 24 + start.hour() as usize],
                };
                sums.push(Sum { total: 1 + i, parts });
            }
        }
        // The human opens and buckets the overview hides stay hidden here.
        let mut forced: Vec<usize> = Vec::new();
        if overview.figure(Metric::HumanOpeners).is_some_and(|f| f.current.number().is_none()) {
            forced.push(0);
        }
        forced.extend(
            overview.series.iter().enumerate().filter(|(_, p)| p.human_openers.is_hidden()).map(|(i, _)| 1 + i),
        );
        let f = suppress_forcing(reader, &cells, &sums, &[], &forced);
        // Keep the overview's own hiding, and add what the heatmap needs hidden.
        if f[0].is_hidden()
            && let Some(h) = overview.figures.iter_mut().find(|h| h.metric == Metric::HumanOpeners)
        {
            h.current = Value::Count(Figure::Withheld);
            h.change = None;
        }
        for (i, p) in overview.series.iter_mut().enumerate() {
            if f[1 + i].is_hidden() && !p.human_openers.is_hidden() {
                p.human_openers = Figure::Withheld;
            }
        }
        let heatmap = (0..7).map(|d| (0..24).map(|h| f[heat0 + d * 24 + h]).collect()).collect();

        // What the overview withholds (beyond small cells), which the tables below decompose too.
        let withheld: Vec<Metric> =
            overview.figures.iter().filter(|f| f.current == Value::Count(Figure::Withheld)).map(|f| f.metric).collect();
        let withheld = |m: Metric| withheld.contains(&m);
        // Since the send: buckets of first opens and clicks, against delivered ever. These cover
        // the source's whole life, which may be the range: a figure the overview withholds is
        // withheld here too, and where it is the sum of buckets (people who opened, who
        // clicked), that sum is a hidden total the buckets must not add up to.
        let mut cells = vec![Cell::people(c.delivered_ever)];
        cells.extend(c.since_openers.iter().map(|&v| Cell::people(v)));
        cells.extend(c.since_clickers.iter().map(|&v| Cell::people(v)));
        let mut forced = Vec::new();
        let mut sums = Vec::new();
        if withheld(Metric::Delivered) {
            forced.push(0);
        }
        for (m, first) in [(Metric::HumanOpeners, 1), (Metric::HumanClickers, 1 + 9)] {
            if withheld(m) {
                let parts = (first..first + 9).collect::<Vec<_>>();
                let total = parts.iter().filter_map(|&i| cells.get(i)).map(|c| c.value).sum();
                forced.push(cells.len());
                sums.push(Sum { total: cells.len(), parts });
                cells.push(Cell::people(total));
            }
        }
        let f = suppress_forcing(reader, &cells, &sums, &[], &forced);
        let mut cumulative = Some(0u64);
        let delivered = f[0].shown().filter(|&d| d > 0);
        let since = SINCE_BUCKETS
            .iter()
            .enumerate()
            .map(|(i, (_, label))| {
                let openers = f[1 + i];
                cumulative = match (cumulative, openers.shown()) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
                SincePoint {
                    label: (*label).to_string(),
                    openers,
                    clickers: f[1 + 9 + i],
                    opened_share: cumulative.zip(delivered).map(|(a, d)| a as f64 / d as f64),
                }
            })
            .collect();
        // Links: every human click is on one link, so the links' clicks add up to the source's
        // (over its life): withheld by the overview, that total is hidden here too.
        let mut cells: Vec<Cell> =
            c.links.iter().flat_map(|l| [Cell::events(l.2, l.3), Cell::people(l.3), Cell::events(l.4, l.4)]).collect();
        let (mut forced, mut sums) = (Vec::new(), Vec::new());
        if withheld(Metric::HumanClicks) && !c.links.is_empty() {
            let parts: Vec<usize> = (0..c.links.len()).map(|i| 3 * i).collect();
            let clicks = c.links.iter().map(|l| l.2).sum();
            let people = c.links.iter().map(|l| l.3).sum();
            forced.push(cells.len());
            sums.push(Sum { total: cells.len(), parts });
            cells.push(Cell::events(clicks, people));
        }
        let f = suppress_forcing(reader, &cells, &sums, &[], &forced);
        let mut links: Vec<LinkFigure> = c
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| LinkFigure {
                position: l.0,
                url: l.1.clone(),
                clicks: f[3 * i],
                clickers: f[3 * i + 1],
                machine_clicks: f[3 * i + 2],
            })
            .collect();
        // Ranked by clicks as shown (hidden last), then by position.
        links.sort_by_key(|l| (std::cmp::Reverse(l.clicks.shown()), l.position));
        let kind_label = source.kind.label().to_string();
        Drill {
            source,
            name,
            kind_label,
            href,
            overview,
            since,
            links,
            heatmap,
            since_svg: String::new(),
            breakdowns: Vec::new(),
        }
    }
}

/// Opens-since-send curves of several sources, to overlay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    pub labels: Vec<String>,
    /// (name, cumulative share opened per bucket; None where hidden)
    pub lines: Vec<(String, Vec<Option<f64>>)>,
    pub chart_svg: String,
}
