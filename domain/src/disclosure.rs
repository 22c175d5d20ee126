//! Disclosure control: how a figure computed from contacts is shown to someone who may not read
//! contacts (today: analysts). One set of rules for segment counts, campaign reports and, later,
//! sequence reports.
//!
//! Invariants:
//! - Readers who may read contacts ([`Reader::Full`]) see every figure exactly.
//! - For the others ([`Reader::Restricted`]) a figure computed from fewer than [`SMALL_CELL`] people
//!   is shown as "fewer than 11" — zero included, so 0 and 1 look the same.
//! - Where the table also shows a total that the figures add up to, a hidden figure must not be
//!   recoverable from the total and the other figures: more figures are withheld (the smallest
//!   shown one first) until no hidden figure can be worked out exactly (complementary suppression).
//!   A hidden total is not recoverable while one of its parts is hidden; when all are shown, the
//!   smallest goes.
//! - Segment counts (which an attacker can steer by choosing saved segments) are also rounded to
//!   the nearest [`ROUND_TO`], and a count whose complement (total − count) is small is withheld,
//!   so NOT(X) and "total − count" do not isolate anyone and differencing two counts does not in
//!   general isolate one contact.
//!
//! The result says what it is ([`Figure`]); there are no sentinel numbers.

use serde::{Deserialize, Serialize};

/// Figures from fewer than this many people are hidden from restricted readers.
pub const SMALL_CELL: u64 = 11;
/// Segment counts shown to restricted readers are rounded to a multiple of this.
pub const ROUND_TO: u64 = 5;

/// Who is reading: may they read contacts (and so see every figure exactly)?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Full,
    Restricted,
}

impl Reader {
    pub fn may_read_contacts(may: bool) -> Reader {
        if may { Reader::Full } else { Reader::Restricted }
    }
}

/// A figure as shown to its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "shown", content = "value", rename_all = "snake_case")]
pub enum Figure {
    /// The true value.
    Exact(u64),
    /// Rounded to the nearest multiple of [`ROUND_TO`].
    Rounded(u64),
    /// Computed from fewer than this many people (possibly none): "<11".
    FewerThan(u64),
    /// Not shown, so that a hidden small figure (or a small complement) cannot be worked out.
    Withheld,
}

impl Figure {
    /// The number shown, if any (exact or rounded).
    pub fn shown(self) -> Option<u64> {
        match self {
            Figure::Exact(n) | Figure::Rounded(n) => Some(n),
            Figure::FewerThan(_) | Figure::Withheld => None,
        }
    }

    /// The true value, when the reader sees it.
    pub fn exact(self) -> Option<u64> {
        match self {
            Figure::Exact(n) => Some(n),
            _ => None,
        }
    }

    pub fn is_hidden(self) -> bool {
        matches!(self, Figure::FewerThan(_) | Figure::Withheld)
    }

    /// Short text for a table cell: "52", "≈50", "<11", "hidden".
    pub fn label(self) -> String {
        match self {
            Figure::Exact(n) => n.to_string(),
            Figure::Rounded(n) => format!("≈{n}"),
            Figure::FewerThan(k) => format!("<{k}"),
            Figure::Withheld => "hidden".into(),
        }
    }

    /// The words for a sentence: "52", "about 50", "fewer than 11", "hidden".
    pub fn words(self) -> String {
        match self {
            Figure::Exact(n) => n.to_string(),
            Figure::Rounded(n) => format!("about {n}"),
            Figure::FewerThan(k) => format!("fewer than {k}"),
            Figure::Withheld => "hidden".into(),
        }
    }
}

/// `n` rounded to the nearest multiple of [`ROUND_TO`] (halves up: 12 → 10, 13 → 15).
pub fn round(n: u64) -> u64 {
    n.saturating_add(ROUND_TO / 2) / ROUND_TO * ROUND_TO
}

/// A segment count (`matching` of the organisation's `total` contacts) for its reader:
/// `(matching, total)`.
pub fn segment_count(reader: Reader, matching: u64, total: u64) -> (Figure, Figure) {
    if reader == Reader::Full {
        return (Figure::Exact(matching), Figure::Exact(total));
    }
    let total_fig = if total < SMALL_CELL { Figure::FewerThan(SMALL_CELL) } else { Figure::Rounded(round(total)) };
    let matching_fig = if matching < SMALL_CELL {
        Figure::FewerThan(SMALL_CELL)
    } else if total.saturating_sub(matching) < SMALL_CELL {
        Figure::Withheld
    } else {
        Figure::Rounded(round(matching))
    };
    (matching_fig, total_fig)
}

/// One figure of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub value: u64,
    /// How many distinct people the figure is computed from.
    pub people: u64,
    /// Whether the value counts people (then a hidden one is known to be at most 10); otherwise it
    /// counts events (clicks, opens), which have no such bound.
    pub counts_people: bool,
}

impl Cell {
    /// A count of people.
    pub fn people(n: u64) -> Cell {
        Cell { value: n, people: n, counts_people: true }
    }
    /// A count of events made by `people` distinct people.
    pub fn events(n: u64, people: u64) -> Cell {
        Cell { value: n, people, counts_people: false }
    }
}

/// A relation the reader can see: cell `total` is the sum of cells `parts` (indexes into the
/// table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sum {
    pub total: usize,
    pub parts: Vec<usize>,
}

/// The range a reader can deduce for a hidden cell on its own: (lowest, highest or unbounded).
fn range(cell: &Cell, fig: Figure) -> (u64, Option<u64>) {
    match fig {
        Figure::FewerThan(k) if cell.counts_people => (0, Some(k.saturating_sub(1))),
        Figure::FewerThan(_) => (0, None),
        // A withheld figure was shown before: it comes from at least SMALL_CELL people.
        _ => (SMALL_CELL, None),
    }
}

/// Whether some hidden part of `sum` can be worked out exactly from the total and the shown parts.
fn pins_a_hidden_part(sum: &Sum, cells: &[Cell], shown: &[Figure]) -> bool {
    let Some(total) = shown.get(sum.total).and_then(|f| f.shown()) else { return false };
    let known: u64 = sum.parts.iter().filter_map(|&p| shown.get(p).and_then(|f| f.shown())).sum();
    let rest = total.saturating_sub(known);
    let hidden: Vec<(u64, Option<u64>)> = sum
        .parts
        .iter()
        .filter(|&&p| shown.get(p).is_some_and(|f| f.is_hidden()))
        .filter_map(|&p| Some(range(cells.get(p)?, *shown.get(p)?)))
        .collect();
    if hidden.is_empty() {
        return false;
    }
    (0..hidden.len()).any(|i| {
        let (lo, hi) = hidden[i];
        let others_min: u64 = hidden.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, r)| r.0).sum();
        let others_max: Option<u64> = hidden
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .try_fold(0u64, |acc, (_, r)| r.1.map(|h| acc.saturating_add(h)));
        // this = rest − others, with others within [others_min, others_max].
        let low = match others_max {
            Some(m) => lo.max(rest.saturating_sub(m)),
            None => lo,
        };
        let high = match hi {
            Some(h) => h.min(rest.saturating_sub(others_min)),
            None => rest.saturating_sub(others_min),
        };
        low == high
    })
}

/// Small-cell suppression of a table of figures, with complementary suppression over the sums the
/// reader can see. Returns one [`Figure`] per cell, in order.
pub fn suppress(reader: Reader, cells: &[Cell], sums: &[Sum]) -> Vec<Figure> {
    suppress_preferring(reader, cells, sums, &[])
}

/// [`suppress`], except that where a sum must give up one more figure and its total is one of
/// `totals_first`, the total goes rather than a part (a table whose parts matter more than their
/// total: delivered, bounced and failed rather than "sent").
pub fn suppress_preferring(reader: Reader, cells: &[Cell], sums: &[Sum], totals_first: &[usize]) -> Vec<Figure> {
    suppress_forcing(reader, cells, sums, totals_first, &[])
}

/// [`suppress_preferring`], with the cells `forced` hidden from the start: figures another page
/// withholds (a table is one view of figures that other pages show too), so that this table
/// neither shows them nor lets them be worked out from its sums.
pub fn suppress_forcing(
    reader: Reader,
    cells: &[Cell],
    sums: &[Sum],
    totals_first: &[usize],
    forced: &[usize],
) -> Vec<Figure> {
    if reader == Reader::Full {
        return cells.iter().map(|c| Figure::Exact(c.value)).collect();
    }
    let mut shown: Vec<Figure> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if c.people < SMALL_CELL {
                Figure::FewerThan(SMALL_CELL)
            } else if forced.contains(&i) {
                Figure::Withheld
            } else {
                Figure::Exact(c.value)
            }
        })
        .collect();
    // Every pass hides at least one more figure or stops, so this ends.
    loop {
        let mut changed = false;
        for sum in sums {
            if shown.get(sum.total).is_some_and(|f| f.is_hidden()) {
                // A hidden total is the sum of its parts: it can be worked out only when every
                // part is shown, so then the smallest part goes too. (With a part hidden, the
                // total is that part plus the others: as unknown as the part.)
                let all_shown = sum.parts.iter().all(|&p| shown.get(p).is_some_and(|f| !f.is_hidden()));
                if all_shown
                    && let Some(victim) =
                        sum.parts.iter().copied().min_by_key(|&p| (cells.get(p).map(|c| c.value).unwrap_or(0), p))
                    && let Some(f) = shown.get_mut(victim)
                {
                    *f = Figure::Withheld;
                    changed = true;
                }
                continue;
            }
            if pins_a_hidden_part(sum, cells, &shown) {
                let next = sum
                    .parts
                    .iter()
                    .copied()
                    .filter(|&p| shown.get(p).is_some_and(|f| !f.is_hidden()))
                    .min_by_key(|&p| (cells.get(p).map(|c| c.value).unwrap_or(0), p));
                let total_shown = shown.get(sum.total).is_some_and(|f| !f.is_hidden());
                let victim = if totals_first.contains(&sum.total) && total_shown {
                    sum.total
                } else {
                    next.unwrap_or(sum.total)
                };
                if let Some(f) = shown.get_mut(victim) {
                    *f = Figure::Withheld;
                    changed = true;
                }
            }
        }
        if !changed {
            return shown;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Figure::*;

    const LT: Figure = FewerThan(SMALL_CELL);

    #[test]
    fn rounding_goes_to_the_nearest_five() {
        assert_eq!([0, 2, 3, 10, 12, 13, 51, 52, 53, 60].map(round), [0, 0, 5, 10, 10, 15, 50, 50, 55, 60]);
        assert_eq!(round(u64::MAX), u64::MAX / 5 * 5, "no overflow");
    }

    #[test]
    fn segment_counts_hide_small_counts_and_small_complements_and_round_the_rest() {
        let r = Reader::Restricted;
        for n in 0..=10 {
            assert_eq!(segment_count(r, n, 60).0, LT, "{n}: zero and small look the same");
        }
        assert_eq!(segment_count(r, 59, 60), (Withheld, Rounded(60)), "NOT(one person) is not total − 1");
        assert_eq!(segment_count(r, 60, 60).0, Withheld);
        assert_eq!(segment_count(r, 49, 60).0, Rounded(50));
        assert_eq!(segment_count(r, 50, 60).0, Withheld, "complement 10");
        assert_eq!(segment_count(r, 52, 1000).0, segment_count(r, 51, 1000).0, "51 vs 52: the review's reproduction");
        assert_eq!(segment_count(r, 3, 7), (LT, LT), "a tiny organisation shows nothing");
        assert_eq!(segment_count(Reader::Full, 1, 60), (Exact(1), Exact(60)));
    }

    #[test]
    fn small_cells_are_hidden_and_zero_with_them() {
        let cells = [Cell::people(0), Cell::people(1), Cell::people(10), Cell::people(11), Cell::events(40, 3)];
        assert_eq!(suppress(Reader::Restricted, &cells, &[]), vec![LT, LT, LT, Exact(11), LT]);
        assert_eq!(
            suppress(Reader::Full, &cells, &[]),
            vec![Exact(0), Exact(1), Exact(10), Exact(11), Exact(40)],
            "readers who may read contacts see everything"
        );
    }

    #[test]
    fn a_lone_hidden_cell_of_a_total_takes_the_next_smallest_with_it() {
        // total 44 = 12 + 2 + 30: showing 12 and 30 would give away the 2.
        let cells = [Cell::events(44, 44), Cell::events(12, 12), Cell::events(2, 2), Cell::events(30, 20)];
        let sums = [Sum { total: 0, parts: vec![1, 2, 3] }];
        let got = suppress(Reader::Restricted, &cells, &sums);
        assert_eq!(got, vec![Exact(44), Withheld, LT, Exact(30)]);
        assert_eq!(got[1], Withheld, "the smallest shown part (12) is withheld, not the larger 30");
    }

    #[test]
    fn hidden_zeros_are_not_recoverable_either() {
        // total 500 = 500 + 0 + 0: two hidden zeros sum to 0, so both would be known to be 0.
        let cells = [Cell::people(500), Cell::people(500), Cell::people(0), Cell::people(0)];
        let sums = [Sum { total: 0, parts: vec![1, 2, 3] }];
        assert_eq!(suppress(Reader::Restricted, &cells, &sums), vec![Exact(500), Withheld, LT, LT]);
        // Two hidden people-cells that add up to 20 are both 10: also pinned.
        let cells = [Cell::people(520), Cell::people(500), Cell::people(10), Cell::people(10)];
        assert_eq!(suppress(Reader::Restricted, &cells, &sums)[1], Withheld);
        // 3 + 4 = 7 over two hidden cells: neither can be told.
        let cells = [Cell::people(507), Cell::people(500), Cell::people(3), Cell::people(4)];
        assert_eq!(suppress(Reader::Restricted, &cells, &sums), vec![Exact(507), Exact(500), LT, LT]);
    }

    #[test]
    fn a_figure_hidden_elsewhere_stays_hidden_and_unrecoverable_here() {
        // 40 = 3 + 20 + 17, where another page withholds the 40: showing 20 and 17 with the 3
        // hidden is fine (two unknowns), but with the 40 hidden and every part shown the parts
        // would give it away, so the smallest goes.
        let cells = [Cell::people(40), Cell::people(3), Cell::people(20), Cell::people(17)];
        let sums = [Sum { total: 0, parts: vec![1, 2, 3] }];
        assert_eq!(
            suppress_forcing(Reader::Restricted, &cells, &sums, &[], &[0]),
            vec![Withheld, LT, Exact(20), Exact(17)]
        );
        let cells = [Cell::people(40), Cell::people(23), Cell::people(17)];
        let sums = [Sum { total: 0, parts: vec![1, 2] }];
        assert_eq!(suppress_forcing(Reader::Restricted, &cells, &sums, &[], &[0]), vec![Withheld, Exact(23), Withheld]);
        assert_eq!(
            suppress_forcing(Reader::Restricted, &cells, &sums, &[], &[]),
            vec![Exact(40), Exact(23), Exact(17)]
        );
        assert_eq!(
            suppress_forcing(Reader::Full, &cells, &sums, &[], &[0]),
            vec![Exact(40), Exact(23), Exact(17)],
            "readers who may read contacts see everything"
        );
    }

    #[test]
    fn a_hidden_total_hides_its_parts() {
        let cells = [Cell::events(30, 4), Cell::events(18, 3), Cell::events(12, 3)];
        let sums = [Sum { total: 0, parts: vec![1, 2] }];
        assert_eq!(suppress(Reader::Restricted, &cells, &sums), vec![LT, LT, LT]);
        let cells = [Cell::events(30, 4), Cell::events(30, 12)];
        let sums = [Sum { total: 0, parts: vec![1] }];
        assert_eq!(suppress(Reader::Restricted, &cells, &sums), vec![LT, Withheld]);
    }

    #[test]
    fn a_preferred_total_goes_instead_of_a_part_and_stays_unrecoverable() {
        // sent 95 = delivered 95 + bounced 0 + failed 0: showing both would say "no bounce".
        let cells = [Cell::people(95), Cell::people(95), Cell::people(0), Cell::people(0)];
        let sums = [Sum { total: 0, parts: vec![1, 2, 3] }];
        assert_eq!(suppress(Reader::Restricted, &cells, &sums), vec![Exact(95), Withheld, LT, LT]);
        assert_eq!(suppress_preferring(Reader::Restricted, &cells, &sums, &[0]), vec![Withheld, Exact(95), LT, LT]);
        // A hidden total with a hidden part gives nothing away: the other parts stay.
        let cells = [Cell::people(8), Cell::people(5), Cell::people(3)];
        assert_eq!(suppress(Reader::Restricted, &cells, &[Sum { total: 0, parts: vec![1, 2] }]), vec![LT, LT, LT]);
        let cells = [Cell::people(60), Cell::people(5), Cell::people(20), Cell::people(35)];
        let sums = [Sum { total: 0, parts: vec![1, 2, 3] }];
        let f = suppress_preferring(Reader::Restricted, &cells, &sums, &[0]);
        assert_eq!(f, vec![Withheld, LT, Exact(20), Exact(35)]);
    }

    /// Brute force: for random small tables, no hidden part of any sum can be pinned by a reader
    /// who knows the rules, and every cell from fewer than 11 people is hidden.
    #[test]
    fn no_hidden_cell_is_ever_recoverable_on_random_tables() {
        let mut seed: u64 = 0x5EED;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..5000 {
            let parts = 1 + next(5) as usize;
            let mut cells = vec![Cell::people(0)];
            let mut total = 0;
            for _ in 0..parts {
                let v = if next(2) == 0 { next(12) } else { next(60) };
                let c = if next(3) == 0 { Cell::events(v + next(5), v) } else { Cell::people(v) };
                total += c.value;
                cells.push(c);
            }
            let people = cells.iter().skip(1).map(|c| c.people).sum();
            cells[0] = Cell { value: total, people, counts_people: cells.iter().skip(1).all(|c| c.counts_people) };
            let sums = [Sum { total: 0, parts: (1..=parts).collect() }];
            let shown = suppress(Reader::Restricted, &cells, &sums);
            for (c, f) in cells.iter().zip(&shown) {
                if c.people < SMALL_CELL {
                    assert!(f.is_hidden(), "{cells:?} {shown:?}");
                }
                if let Some(n) = f.shown() {
                    assert_eq!(n, c.value);
                }
            }
            assert!(!pins_a_hidden_part(&sums[0], &cells, &shown), "{cells:?} {shown:?}");
            // Brute-force check of the same property for people-cells: enumerate every assignment of
            // the hidden cells consistent with what is shown; each hidden cell must take at least
            // two values across them.
            if shown[0].shown().is_some() && cells.iter().all(|c| c.counts_people) {
                let hidden: Vec<usize> = (1..=parts).filter(|&p| shown[p].is_hidden()).collect();
                if hidden.is_empty() || hidden.len() > 3 {
                    continue;
                }
                let known: u64 = (1..=parts).filter_map(|p| shown[p].shown()).sum();
                let rest = total - known;
                let ranges: Vec<(u64, u64)> = hidden
                    .iter()
                    .map(|&p| match shown[p] {
                        FewerThan(_) => (0, 10),
                        _ => (11, rest.max(11)),
                    })
                    .collect();
                if ranges.iter().map(|r| r.1 - r.0 + 1).product::<u64>() > 200_000 {
                    continue;
                }
                let mut seen: Vec<std::collections::BTreeSet<u64>> = vec![Default::default(); hidden.len()];
                let mut idx = vec![0u64; hidden.len()];
                let mut values: Vec<u64> = ranges.iter().map(|r| r.0).collect();
                loop {
                    if values.iter().sum::<u64>() == rest {
                        for (s, v) in seen.iter_mut().zip(&values) {
                            s.insert(*v);
                        }
                    }
                    let mut k = 0;
                    loop {
                        if k == values.len() {
                            break;
                        }
                        idx[k] += 1;
                        if ranges[k].0 + idx[k] <= ranges[k].1 {
                            values[k] = ranges[k].0 + idx[k];
                            break;
                        }
                        idx[k] = 0;
                        values[k] = ranges[k].0;
                        k += 1;
                    }
                    if k == values.len() {
                        break;
                    }
                }
                for s in &seen {
                    assert!(s.len() != 1, "a hidden cell is recoverable: {cells:?} {shown:?}");
                }
            }
        }
    }

    #[test]
    fn figures_serialise_as_what_they_are() {
        assert_eq!(serde_json::to_string(&Exact(3)).unwrap(), r#"{"shown":"exact","value":3}"#);
        assert_eq!(serde_json::to_string(&LT).unwrap(), r#"{"shown":"fewer_than","value":11}"#);
        assert_eq!(serde_json::to_string(&Withheld).unwrap(), r#"{"shown":"withheld"}"#);
        assert_eq!(serde_json::from_str::<Figure>(r#"{"shown":"rounded","value":50}"#).unwrap(), Rounded(50));
        assert_eq!([Exact(52), Rounded(50), LT, Withheld].map(Figure::label), ["52", "≈50", "<11", "hidden"]);
        assert_eq!(LT.words(), "fewer than 11");
    }
}
