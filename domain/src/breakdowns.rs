//! Report breakdowns: a source's (or the organisation's) figures split by the recipient's mailbox
//! provider, the email client that opened, the TLS version the message was delivered over, and
//! the audience segment or list the recipient was sent to through.
//!
//! The codes are stored with the facts (`delivery.domain_family`, `delivery.tls_version`,
//! `engagement_event.client`) and rolled up into `report_split`; 0 means "not recorded" (mail
//! sent before the code was kept, or a hit without a user agent).
//!
//! Disclosure: every breakdown is suppressed as one table whose rows add up, column by column,
//! to the source's total (the figure the overview shows), so a hidden row cannot be worked out
//! from the total and its siblings. Audience rows may overlap (a patient in two lists); treating
//! them as adding up only hides more. Segments and lists sent to fewer than 11 people are not
//! listed at all.

use crate::disclosure::{Cell, Figure, Reader, SMALL_CELL, Sum, suppress};
use crate::reports::{Metric, Overview, Totals, Value, csv_field};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a breakdown splits by (the `dim` column of `report_split`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Provider,
    Client,
    Tls,
    Segment,
    List,
}

impl Dimension {
    pub const ALL: [Dimension; 5] =
        [Dimension::Provider, Dimension::Client, Dimension::Tls, Dimension::Segment, Dimension::List];

    pub fn code(self) -> i16 {
        match self {
            Dimension::Provider => 1,
            Dimension::Client => 2,
            Dimension::Tls => 3,
            Dimension::Segment => 4,
            Dimension::List => 5,
        }
    }

    pub fn from_code(c: i16) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.code() == c)
    }

    pub fn title(self) -> &'static str {
        match self {
            Dimension::Provider => "By mailbox provider",
            Dimension::Client => "By email client",
            Dimension::Tls => "By TLS version",
            Dimension::Segment => "By audience segment",
            Dimension::List => "By audience list",
        }
    }

    /// The first column's heading.
    pub fn heading(self) -> &'static str {
        match self {
            Dimension::Provider => "Mailbox provider",
            Dimension::Client => "Email client",
            Dimension::Tls => "Delivered over",
            Dimension::Segment => "Segment",
            Dimension::List => "List",
        }
    }

    /// The label of a stored code (provider, client and TLS dimensions).
    pub fn label(self, code: i16) -> &'static str {
        match self {
            Dimension::Provider => MailboxFamily::from_code(code).map_or("Not recorded", MailboxFamily::label),
            Dimension::Client => ClientFamily::from_code(code).map_or("Not recorded", ClientFamily::label),
            Dimension::Tls => match code {
                13 => "TLS 1.3",
                12 => "TLS 1.2",
                _ => "Not recorded",
            },
            Dimension::Segment | Dimension::List => "",
        }
    }
}

/// The recipient domain's mailbox provider family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MailboxFamily {
    Gmail,
    Microsoft,
    Yahoo,
    Apple,
    Other,
}

impl MailboxFamily {
    pub const ALL: [MailboxFamily; 5] = [
        MailboxFamily::Gmail,
        MailboxFamily::Microsoft,
        MailboxFamily::Yahoo,
        MailboxFamily::Apple,
        MailboxFamily::Other,
    ];

    pub fn code(self) -> i16 {
        match self {
            MailboxFamily::Gmail => 1,
            MailboxFamily::Microsoft => 2,
            MailboxFamily::Yahoo => 3,
            MailboxFamily::Apple => 4,
            MailboxFamily::Other => 5,
        }
    }

    pub fn from_code(c: i16) -> Option<MailboxFamily> {
        MailboxFamily::ALL.into_iter().find(|f| f.code() == c)
    }

    pub fn label(self) -> &'static str {
        match self {
            MailboxFamily::Gmail => "Gmail",
            MailboxFamily::Microsoft => "Microsoft (Outlook.com, Hotmail)",
            MailboxFamily::Yahoo => "Yahoo (and AOL)",
            MailboxFamily::Apple => "Apple (iCloud)",
            MailboxFamily::Other => "Other providers",
        }
    }

    /// The family of an address's domain (the part after the last `@`, any case). Consumer
    /// domains only: a company's own domain hosted by Google or Microsoft is "other" (telling
    /// would need its MX records, which sending does not look up).
    pub fn of_address(address: &str) -> MailboxFamily {
        let domain = address.rsplit_once('@').map_or(address, |(_, d)| d).trim().trim_end_matches('.');
        let d = domain.to_ascii_lowercase();
        let base = |names: &[&str]| {
            names.iter().any(|n| d == *n || d.strip_prefix(n).is_some_and(|rest| rest.starts_with('.')))
        };
        if matches!(d.as_str(), "gmail.com" | "googlemail.com") {
            MailboxFamily::Gmail
        } else if base(&["outlook", "hotmail", "live", "msn", "windowslive"]) {
            MailboxFamily::Microsoft
        } else if base(&["yahoo", "ymail", "rocketmail"]) || matches!(d.as_str(), "aol.com" | "aim.com") {
            MailboxFamily::Yahoo
        } else if matches!(d.as_str(), "icloud.com" | "me.com" | "mac.com") {
            MailboxFamily::Apple
        } else {
            MailboxFamily::Other
        }
    }
}

/// The email client family that opened a message, from the tracking hit's user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientFamily {
    AppleMail,
    Gmail,
    Outlook,
    Yahoo,
    Thunderbird,
    Browser,
    Other,
}

impl ClientFamily {
    pub const ALL: [ClientFamily; 7] = [
        ClientFamily::AppleMail,
        ClientFamily::Gmail,
        ClientFamily::Outlook,
        ClientFamily::Yahoo,
        ClientFamily::Thunderbird,
        ClientFamily::Browser,
        ClientFamily::Other,
    ];

    pub fn code(self) -> i16 {
        match self {
            ClientFamily::AppleMail => 1,
            ClientFamily::Gmail => 2,
            ClientFamily::Outlook => 3,
            ClientFamily::Yahoo => 4,
            ClientFamily::Thunderbird => 5,
            ClientFamily::Browser => 6,
            ClientFamily::Other => 7,
        }
    }

    pub fn from_code(c: i16) -> Option<ClientFamily> {
        ClientFamily::ALL.into_iter().find(|f| f.code() == c)
    }

    pub fn label(self) -> &'static str {
        match self {
            ClientFamily::AppleMail => "Apple Mail",
            ClientFamily::Gmail => "Gmail",
            ClientFamily::Outlook => "Outlook",
            ClientFamily::Yahoo => "Yahoo Mail",
            ClientFamily::Thunderbird => "Thunderbird",
            ClientFamily::Browser => "Webmail in a browser",
            ClientFamily::Other => "Other clients",
        }
    }

    /// The family of a user agent; `None` without one.
    pub fn of_user_agent(ua: Option<&str>) -> Option<ClientFamily> {
        let ua = ua.map(str::trim).filter(|u| !u.is_empty())?;
        let l = ua.to_ascii_lowercase();
        Some(if l.contains("googleimageproxy") || l.contains("gmail") {
            ClientFamily::Gmail
        } else if l.contains("yahoomailproxy") || l.contains("yahoo") {
            ClientFamily::Yahoo
        } else if l.contains("outlook")
            || l.contains("msoffice")
            || l.contains("ms-office")
            || l.contains("microsoft office")
        {
            ClientFamily::Outlook
        } else if l.contains("thunderbird") {
            ClientFamily::Thunderbird
        } else if l.contains("applewebkit") && !l.contains("safari") && !l.contains("chrome") {
            // Apple Mail (and its privacy proxy) load images with WebKit but no browser token.
            ClientFamily::AppleMail
        } else if ua == "Mozilla/5.0" {
            ClientFamily::AppleMail
        } else if ["chrome/", "firefox/", "safari/", "edg/", "opera"].iter().any(|b| l.contains(b)) {
            ClientFamily::Browser
        } else {
            ClientFamily::Other
        })
    }
}

/// One row of a breakdown as stored (before disclosure control).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitCounts {
    /// Provider, client or TLS code (0: not recorded).
    pub code: i16,
    /// The segment or list (audience dimensions).
    pub part: Option<Uuid>,
    /// The segment's or list's name (audience dimensions).
    pub name: String,
    pub sent: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub human_opens: u64,
    pub human_openers: u64,
    pub human_clickers: u64,
    pub unsubscribes: u64,
}

/// One row of a breakdown as shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakdownRow {
    pub label: String,
    pub delivered: Figure,
    pub bounced: Figure,
    pub openers: Figure,
    /// Human opens, every one (the client breakdown).
    pub opens: Figure,
    pub clickers: Figure,
    pub unsubscribes: Figure,
    /// Share of delivered messages opened by a person (None when either is hidden).
    pub open_rate: Option<f64>,
    pub click_rate: Option<f64>,
    /// Share of the row's delivered messages among all shown (TLS: the share over each version).
    pub share: Option<f64>,
}

/// A breakdown table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    pub dimension: Dimension,
    pub rows: Vec<BreakdownRow>,
}

/// The columns of a breakdown, in cell order within a row.
pub const COLS: usize = 6;

impl Breakdown {
    /// Which of a breakdown's column totals `overview` (of the same source and range) hides:
    /// the breakdown must not give them back as the sum of its rows.
    pub fn hidden_totals(overview: &Overview) -> [bool; COLS] {
        let hidden =
            |m: Metric| overview.figure(m).is_none_or(|f| matches!(f.current, Value::Count(x) if x.is_hidden()));
        [
            hidden(Metric::Delivered),
            hidden(Metric::Bounced),
            hidden(Metric::HumanOpeners),
            false,
            hidden(Metric::HumanClickers),
            hidden(Metric::Unsubscribes),
        ]
    }

    /// Build a breakdown of `rows` against `total` (the source's or organisation's totals over
    /// the same range), suppressing small cells for restricted readers. `hidden_totals` are the
    /// column totals the page hides elsewhere ([`Breakdown::hidden_totals`]).
    pub fn build(
        reader: Reader,
        dimension: Dimension,
        total: &Totals,
        hidden_totals: [bool; COLS],
        rows: &[SplitCounts],
    ) -> Breakdown {
        let audience = matches!(dimension, Dimension::Segment | Dimension::List);
        let total_opens: u64 = rows.iter().map(|r| r.human_opens).sum();
        let mut cells = vec![
            Cell::people(total.delivered),
            Cell::people(total.bounced),
            Cell::people(total.human_openers),
            Cell::events(total_opens, total.human_openers),
            Cell::people(total.human_clickers),
            Cell::people(total.unsubscribes),
        ];
        for r in rows {
            cells.extend([
                Cell::people(r.delivered),
                Cell::people(r.bounced),
                Cell::people(r.human_openers),
                Cell::events(r.human_opens, r.human_openers),
                Cell::people(r.human_clickers),
                Cell::people(r.unsubscribes),
            ]);
        }
        let sums: Vec<Sum> = (0..COLS)
            .map(|c| Sum { total: c, parts: (0..rows.len()).map(|i| COLS + i * COLS + c).collect() })
            .collect();
        let mut f = suppress(reader, &cells, &sums);
        // A total hidden elsewhere on the page (withheld there to protect another figure) must
        // not come back as the sum of a fully shown column: withhold its smallest row too.
        if reader == Reader::Restricted {
            for (c, hidden) in hidden_totals.iter().enumerate() {
                let parts: Vec<usize> = (0..rows.len()).map(|i| COLS + i * COLS + c).collect();
                if *hidden
                    && parts.iter().all(|&p| f[p].shown().is_some())
                    && let Some(&p) = parts.iter().min_by_key(|&&p| cells[p].value)
                {
                    f[p] = Figure::Withheld;
                }
            }
        }
        let at = |i: usize| f.get(i).copied().unwrap_or(Figure::Withheld);
        let rate = |a: Figure, b: Figure| match (a.shown(), b.shown()) {
            (Some(a), Some(b)) if b > 0 => Some(a as f64 / b as f64),
            _ => None,
        };
        let delivered_shown: Option<u64> =
            if rows.iter().enumerate().all(|(i, _)| at(COLS + i * COLS).shown().is_some()) {
                Some((0..rows.len()).filter_map(|i| at(COLS + i * COLS).shown()).sum())
            } else {
                at(0).shown()
            };
        let mut rows_out: Vec<BreakdownRow> = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            // Segments and lists sent to fewer than 11 people are not listed.
            if audience && r.sent < SMALL_CELL {
                continue;
            }
            let b = COLS + i * COLS;
            let delivered = at(b);
            let label = if audience {
                if r.name.is_empty() { "A deleted segment or list".to_string() } else { r.name.clone() }
            } else {
                dimension.label(r.code).to_string()
            };
            rows_out.push(BreakdownRow {
                label,
                delivered,
                bounced: at(b + 1),
                openers: at(b + 2),
                opens: at(b + 3),
                clickers: at(b + 4),
                unsubscribes: at(b + 5),
                open_rate: rate(at(b + 2), delivered),
                click_rate: rate(at(b + 4), delivered),
                share: match (delivered.shown(), delivered_shown) {
                    (Some(a), Some(t)) if t > 0 => Some(a as f64 / t as f64),
                    _ => None,
                },
            });
        }
        // Largest first by the figure the table is about (people who opened, for clients;
        // delivered otherwise) as shown: hidden rows after, by name, so their order says nothing
        // of their size; "not recorded" last.
        let key = |r: &BreakdownRow| if dimension == Dimension::Client { r.openers } else { r.delivered };
        let mut rows = rows_out;
        rows.sort_by_key(|r| {
            (r.label == "Not recorded", key(r).is_hidden(), std::cmp::Reverse(key(r).shown()), r.label.clone())
        });
        Breakdown { dimension, rows }
    }

    /// The breakdown as CSV lines (a heading line, then one line per row).
    pub fn csv(&self) -> String {
        let mut out = format!(
            "{},delivered,bounced,opened_by_people,opens_by_people,clicked_by_people,unsubscribed,open_rate,click_rate\n",
            csv_field(&self.dimension.heading().to_ascii_lowercase().replace(' ', "_"))
        );
        for r in &self.rows {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                csv_field(&r.label),
                Value::Count(r.delivered).csv(),
                Value::Count(r.bounced).csv(),
                Value::Count(r.openers).csv(),
                Value::Count(r.opens).csv(),
                Value::Count(r.clickers).csv(),
                Value::Count(r.unsubscribes).csv(),
                Value::Rate(r.open_rate).csv(),
                Value::Rate(r.click_rate).csv(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_families_of_addresses() {
        assert_eq!(MailboxFamily::of_address("a@gmail.com"), MailboxFamily::Gmail);
        assert_eq!(MailboxFamily::of_address("a@GoogleMail.com"), MailboxFamily::Gmail);
        assert_eq!(MailboxFamily::of_address("a@hotmail.co.uk"), MailboxFamily::Microsoft);
        assert_eq!(MailboxFamily::of_address("a@outlook.com"), MailboxFamily::Microsoft);
        assert_eq!(MailboxFamily::of_address("a@live.fr"), MailboxFamily::Microsoft);
        assert_eq!(MailboxFamily::of_address("a@yahoo.co.jp"), MailboxFamily::Yahoo);
        assert_eq!(MailboxFamily::of_address("a@aol.com"), MailboxFamily::Yahoo);
        assert_eq!(MailboxFamily::of_address("a@icloud.com"), MailboxFamily::Apple);
        assert_eq!(MailboxFamily::of_address("a@me.com."), MailboxFamily::Apple);
        // Look-alikes and company domains are "other".
        assert_eq!(MailboxFamily::of_address("a@gmail.com.evil.example"), MailboxFamily::Other);
        assert_eq!(MailboxFamily::of_address("a@livestrong.org"), MailboxFamily::Other);
        assert_eq!(MailboxFamily::of_address("a@hospital.example"), MailboxFamily::Other);
        assert_eq!(MailboxFamily::of_address(""), MailboxFamily::Other);
        assert_eq!(MailboxFamily::of_address("@@@"), MailboxFamily::Other);
        assert_eq!(MailboxFamily::of_address(&format!("a@{}", "x.".repeat(50_000))), MailboxFamily::Other);
        assert_eq!(MailboxFamily::of_address("a@GMAIL.COM"), MailboxFamily::Gmail);
        assert_eq!(MailboxFamily::of_address("a@gmail.com\u{0}"), MailboxFamily::Other);
        for f in MailboxFamily::ALL {
            assert_eq!(MailboxFamily::from_code(f.code()), Some(f));
        }
    }

    #[test]
    fn client_families_of_user_agents() {
        let of = |ua: &str| ClientFamily::of_user_agent(Some(ua));
        assert_eq!(
            of("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"),
            Some(ClientFamily::Gmail)
        );
        assert_eq!(
            of("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"),
            Some(ClientFamily::AppleMail)
        );
        assert_eq!(of("Mozilla/5.0"), Some(ClientFamily::AppleMail));
        assert_eq!(
            of("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.4266; Pro)"),
            Some(ClientFamily::Outlook)
        );
        assert_eq!(
            of("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"),
            Some(ClientFamily::Yahoo)
        );
        assert_eq!(
            of("Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.3.1"),
            Some(ClientFamily::Thunderbird)
        );
        assert_eq!(
            of("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
            Some(ClientFamily::Browser)
        );
        assert_eq!(of("curl/8.0"), Some(ClientFamily::Other));
        // Hostile agents: huge, control characters, non-ASCII; only a code comes out.
        assert_eq!(of(&"A".repeat(100_000)), Some(ClientFamily::Other));
        assert_eq!(of("\u{0}\r\nOutlook\u{202e}"), Some(ClientFamily::Outlook));
        assert_eq!(of("Ÿàhôô Mäil"), Some(ClientFamily::Other));
        assert_eq!(ClientFamily::of_user_agent(None), None);
        assert_eq!(ClientFamily::of_user_agent(Some("  ")), None);
        for f in ClientFamily::ALL {
            assert_eq!(ClientFamily::from_code(f.code()), Some(f));
        }
    }

    fn row(code: i16, delivered: u64, openers: u64) -> SplitCounts {
        SplitCounts {
            code,
            sent: delivered,
            delivered,
            human_openers: openers,
            human_opens: openers * 2,
            ..SplitCounts::default()
        }
    }

    #[test]
    fn a_small_provider_row_is_hidden_with_a_sibling_so_the_total_does_not_give_it_away() {
        let rows = [row(1, 50, 20), row(2, 3, 1), row(5, 40, 12)];
        let total = Totals { delivered: 93, human_openers: 33, ..Totals::default() };
        let b = Breakdown::build(Reader::Restricted, Dimension::Provider, &total, [false; COLS], &rows);
        let small = b.rows.iter().find(|r| r.label.starts_with("Microsoft")).expect("row");
        assert_eq!(small.delivered, Figure::FewerThan(SMALL_CELL));
        let shown: Vec<u64> = b.rows.iter().filter_map(|r| r.delivered.shown()).collect();
        assert_eq!(shown.len(), 1, "a second row is withheld: {b:?}");
        // Full readers see everything.
        let b = Breakdown::build(Reader::Full, Dimension::Provider, &total, [false; COLS], &rows);
        assert!(b.rows.iter().all(|r| r.delivered.shown().is_some()));
        assert_eq!(b.rows[0].label, "Gmail");
        assert_eq!(b.rows[0].share, Some(50.0 / 93.0));
    }

    #[test]
    fn a_total_hidden_elsewhere_is_not_given_back_by_a_fully_shown_column() {
        let rows = [row(1, 50, 20), row(5, 40, 12)];
        let total = Totals { delivered: 90, human_openers: 32, ..Totals::default() };
        let mut hidden = [false; COLS];
        hidden[0] = true;
        let b = Breakdown::build(Reader::Restricted, Dimension::Provider, &total, hidden, &rows);
        let shown: Vec<u64> = b.rows.iter().filter_map(|r| r.delivered.shown()).collect();
        assert_eq!(shown, vec![50]);
        assert!(b.rows.iter().all(|r| r.openers.shown().is_some()));
    }

    #[test]
    fn segments_sent_to_fewer_than_eleven_are_not_listed() {
        let mut a = row(0, 30, 10);
        a.part = Some(Uuid::from_u128(1));
        a.name = "Cardiology follow-ups".into();
        let mut b = row(0, 4, 1);
        b.part = Some(Uuid::from_u128(2));
        b.name = "Rare condition".into();
        let total = Totals { delivered: 34, human_openers: 11, ..Totals::default() };
        for reader in [Reader::Full, Reader::Restricted] {
            let t = Breakdown::build(reader, Dimension::Segment, &total, [false; COLS], &[a.clone(), b.clone()]);
            assert_eq!(t.rows.len(), 1);
            assert_eq!(t.rows[0].label, "Cardiology follow-ups");
            assert!(!t.csv().contains("Rare condition"));
        }
    }
}
